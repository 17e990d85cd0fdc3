// Outbound provisioning in a real browser: a target added from the organization page (a refusal
// keeps what was typed but the credentials), its plan, the approval (asked first), the first run
// appearing, a user the target refuses listed as a failed object and retried from the page, and a
// target name holding markup shown as text. The target is a small SCIM server this test runs on
// loopback (allowed by the server's webhook_allow_loopback setting, as a deployment would).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { startServer, launchBrowser, freshPage, scimClient, shot, signIn, flash, submit } from "./harness.mjs";

const TOKEN = "fake-target-token";
const ERROR = "urn:ietf:params:scim:api:messages:2.0:Error";
const LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/**
 * A SCIM 2.0 target on 127.0.0.1: users only, `eq` filters, PATCH replace, bearer `TOKEN`.
 * `refuse` holds userNames it answers 400 for on create (the target's own policy).
 */
function fakeTarget() {
  const users = new Map();
  const refuse = new Set();
  let next = 1;
  const send = (res, status, body) => {
    res.writeHead(status, body ? { "content-type": "application/scim+json" } : {});
    res.end(body ? JSON.stringify(body) : undefined);
  };
  const list = (resources) => ({ schemas: [LIST], totalResults: resources.length, startIndex: 1, itemsPerPage: resources.length, Resources: resources });
  const emailsOf = (u) => (u.emails || []).map((e) => String(e.value).toLowerCase());
  const server = createServer((req, res) => {
    let raw = "";
    req.on("data", (c) => (raw += c));
    req.on("end", () => {
      if (req.headers.authorization !== `Bearer ${TOKEN}`) return send(res, 401, { schemas: [ERROR], status: "401", detail: "bad token" });
      const url = new URL(req.url, "http://fake");
      const path = url.pathname.replace(/^\/scim\/v2/, "");
      const body = raw ? JSON.parse(raw) : null;
      if (req.method === "GET" && path === "/ServiceProviderConfig") {
        return send(res, 200, {
          schemas: ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
          patch: { supported: true },
          bulk: { supported: false, maxOperations: 0, maxPayloadSize: 0 },
          filter: { supported: true, maxResults: 200 },
          changePassword: { supported: false },
          sort: { supported: false },
          etag: { supported: false },
          authenticationSchemes: [],
        });
      }
      if (path === "/Users" && req.method === "GET") {
        const filter = url.searchParams.get("filter");
        let found = [...users.values()];
        if (filter) {
          const m = /^(\S+) eq (".*")$/.exec(filter);
          if (!m) return send(res, 400, { schemas: [ERROR], status: "400", scimType: "invalidFilter", detail: filter });
          const [attr, value] = [m[1], JSON.parse(m[2]).toLowerCase()];
          found = found.filter((u) =>
            attr === "emails.value" ? emailsOf(u).includes(value) : String(u[attr] ?? "").toLowerCase() === value,
          );
        }
        return send(res, 200, list(found));
      }
      if (path === "/Users" && req.method === "POST") {
        if (refuse.has(body.userName)) {
          return send(res, 400, { schemas: [ERROR], status: "400", scimType: "invalidValue", detail: `${body.userName} is refused by this target's policy` });
        }
        const id = `u${next++}`;
        const user = { ...body, id, meta: { resourceType: "User" } };
        users.set(id, user);
        return send(res, 201, user);
      }
      const one = /^\/Users\/([^/]+)$/.exec(path);
      if (one) {
        const user = users.get(decodeURIComponent(one[1]));
        if (!user) return send(res, 404, { schemas: [ERROR], status: "404", detail: "no such user" });
        if (req.method === "GET") return send(res, 200, user);
        if (req.method === "PUT") {
          users.set(user.id, { ...body, id: user.id, meta: user.meta });
          return send(res, 200, users.get(user.id));
        }
        if (req.method === "PATCH") {
          for (const op of body.Operations || []) if (op.path && !op.path.includes(".")) user[op.path] = op.value;
          return send(res, 200, user);
        }
        if (req.method === "DELETE") {
          users.delete(user.id);
          return send(res, 204);
        }
      }
      return send(res, 404, { schemas: [ERROR], status: "404", detail: `no ${req.method} ${path}` });
    });
  });
  return new Promise((ok) =>
    server.listen(0, "127.0.0.1", () =>
      ok({ url: `http://127.0.0.1:${server.address().port}/scim/v2/`, users, refuse, close: () => new Promise((r) => server.close(r)) }),
    ),
  );
}

let srv;
let browser;
let target;

before(async () => {
  srv = await startServer({ env: { ROLLCALL_WEBHOOK_ALLOW_LOOPBACK: "true" } });
  browser = await launchBrowser();
  target = await fakeTarget();
});

after(async () => {
  await browser?.close();
  await srv?.stop();
  await target?.close();
});

/** Reloads `page` until `check()` holds (the worker pushes in the background). */
async function until(page, what, check) {
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 300));
    await page.reload();
  }
}

test("a provisioning target is added, its plan read and approved after a confirmation, its run shown, a refused user retried, and its name escaped", async () => {
  const org = await srv.api("POST", "/api/v1/organizations", { name: "Push Org" });
  const issued = await srv.api("POST", `/api/v1/organizations/${org.id}/connections`, { idp: "okta", name: "Okta" });
  const okta = scimClient(issued.connection.scim_base_url, issued.token, "Okta SCIM Client 1.0.0");
  for (const name of ["ada", "bob", "zed"]) {
    const r = await okta("POST", "/Users", {
      schemas: ["urn:ietf:params:scim:schemas:core:2.0:User"],
      userName: `${name}@acme.example`,
      name: { givenName: name, familyName: "Example" },
      emails: [{ value: `${name}@acme.example`, type: "work", primary: true }],
      active: true,
    });
    assert.equal(r.status, 201);
  }
  target.refuse.add("zed@acme.example");

  const { page, problems, dialogs } = await freshPage(browser);
  await signIn(page, srv);
  const orgUrl = `${srv.base}/console/organizations/${org.id}`;
  await page.goto(orgUrl);
  await page.getByRole("heading", { name: "Provisioning targets" }).waitFor();
  await page.getByText("No provisioning target yet.").waitFor();

  // The form: the authentication fields follow the kind chosen.
  const name = `<img src=x id=injected> Downstream & "co"`;
  await page.getByText("Add a provisioning target").click();
  await page.getByLabel("Target name").fill(name);
  await page.getByLabel("SCIM base URL").fill("ftp://not-a-scim-server.example/");
  await page.getByLabel(/^Profile/).selectOption("generic");
  await page.getByLabel("Authentication").selectOption("basic");
  assert.equal(await page.getByLabel(/^User name/).isVisible(), true, "Basic asks for a user name");
  assert.equal(await page.getByLabel(/^Token endpoint/).isVisible(), false);
  await page.getByLabel("Authentication").selectOption("oauth_client_credentials");
  assert.equal(await page.getByLabel(/^Token endpoint/).isVisible(), true, "OAuth asks for its token endpoint");
  await page.getByLabel("Authentication").selectOption("bearer");
  assert.equal(await page.getByLabel(/^User name/).isVisible(), false);
  await page.getByLabel(/^Credentials/).fill(TOKEN);
  await page.getByLabel("Deactivate (active: false)").check();
  await page.getByLabel("Every active user of the organization").check();
  await shot(page, "console-target-form");

  // Refused: the admin layer's reason, what was typed kept, the credentials not.
  await submit(page, page.getByRole("button", { name: "Add target" }));
  assert.match(await flash(page), /Not done: base_url/);
  assert.equal(await page.getByLabel("Target name").inputValue(), name);
  assert.equal(await page.getByLabel(/^Credentials/).inputValue(), "", "the credentials are never echoed back");
  assert.equal((await page.content()).includes(TOKEN), false);
  assert.equal((await srv.api("GET", `/api/v1/organizations/${org.id}/provisioning-targets`)).data.length, 0);

  await page.getByLabel("SCIM base URL").fill(target.url);
  await page.getByLabel(/^Credentials/).fill(TOKEN);
  await submit(page, page.getByRole("button", { name: "Add target" }));
  assert.match(await flash(page), /Provisioning target .* created/);
  assert.match(page.url(), /\/provisioning-targets\/[^/?#]+$/);
  const targetUrl = page.url();

  // The name is text, never markup.
  assert.equal((await page.locator("h1").innerText()).trim(), name);
  assert.equal(await page.locator("#injected").count(), 0);
  assert.equal((await page.content()).includes(TOKEN), false, "the credentials are never shown");
  await page.locator("dd", { hasText: "set (never shown)" }).waitFor();

  // The plan: three creates, nothing pushed yet.
  await page.locator("#target-approval", { hasText: "waiting for approval" }).waitFor();
  assert.equal((await page.locator("#plan-count-create").innerText()).trim(), "3");
  for (const n of ["ada", "bob", "zed"]) await page.locator("#plan-create + ul li", { hasText: `${n}@acme.example` }).waitFor();
  assert.equal(target.users.size, 0, "reading the plan writes nothing");
  await shot(page, "console-target-plan");

  // Approving asks first: dismissed, nothing happens.
  const approve = page.getByRole("button", { name: "Approve and start the first push" });
  dialogs.accept = false;
  await approve.click();
  assert.equal(dialogs.confirms.length, 1);
  assert.match(dialogs.confirms[0], /^Approve and start the first push\? 3 user\(s\) will be created/);
  assert.equal(page.url(), targetUrl);
  assert.equal((await srv.api("GET", `/api/v1/organizations/${org.id}/provisioning-targets`)).data[0].approved, false);
  dialogs.accept = true;
  await submit(page, approve);
  assert.match(await flash(page), /Push approved/);
  assert.equal(dialogs.confirms.length, 2);

  // The run appears; the refused user is a failed object with the target's error.
  await until(page, "a finished run", async () => (await page.locator("#runs-table tbody tr").count()) > 0
    && !(await page.locator("#runs-table tbody tr").first().innerText()).includes("running"));
  await until(page, "ada and bob on the target", async () => target.users.size === 2);
  const failed = page.locator("#objects-table tbody tr", { hasText: "zed@acme.example" });
  await until(page, "zed failed", async () => (await failed.locator(".status", { hasText: "failed" }).count()) === 1);
  assert.match(await failed.innerText(), /refused by this target's policy/);
  assert.match(await failed.innerText(), /failed attempt/);
  assert.match(await page.locator("#objects-table tbody tr").first().innerText(), /zed@acme\.example/, "failed objects come first");
  await shot(page, "console-target-runs");

  // The target accepts zed now; Retry pushes it.
  target.refuse.clear();
  await submit(page, failed.getByRole("button", { name: /Retry/ }));
  assert.match(await flash(page), /is pushed again now/);
  await until(page, "zed synced", async () => (await failed.locator(".status", { hasText: "synced" }).count()) === 1);
  assert.equal(target.users.size, 3);
  assert.ok([...target.users.values()].some((u) => u.userName === "zed@acme.example"));

  // The organization's page lists it, its name as text.
  await page.goto(orgUrl);
  const link = page.getByRole("link", { name });
  await link.waitFor();
  assert.equal(await page.locator("#injected").count(), 0);
  assert.equal(await page.locator("tr", { has: link }).locator("td").nth(3).innerText(), "approved");

  assert.deepEqual(problems, []);
});
