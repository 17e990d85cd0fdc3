// The console and the setup page in a real browser, against a real `rollcall serve`.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { startServer, launchBrowser, freshPage, scimClient, shot, signIn as signInAs, flash } from "./harness.mjs";

let srv;
let browser;

before(async () => {
  srv = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await srv?.stop();
});

/** Signs an operator in on `page` with the server's API key. */
const signIn = (page) => signInAs(page, srv);

test("an operator signs in, creates an organization, a role and a setup link; the IT admin connects Entra ID and watches its requests arrive", async () => {
  const { page, problems } = await freshPage(browser);
  await signIn(page);
  await shot(page, "console-organizations-empty");

  // The organization.
  await page.getByLabel("Name", { exact: true }).fill("Acme Corp");
  await page.getByRole("button", { name: "Create organization" }).click();
  await page.waitForURL(/\/console\/organizations\/[^/]+$/);
  assert.match(await flash(page), /Organization "Acme Corp" created/);
  const orgUrl = page.url();
  const orgId = orgUrl.split("/").pop();

  // A role.
  await page.getByText("Create a role").click();
  await page.locator("#role_key").fill("admin");
  await page.locator("#role_name").fill("Administrator");
  await page.getByRole("button", { name: "Create role" }).click();
  assert.match(await flash(page), /Role "admin" created/);
  await shot(page, "console-organization");

  // A setup link, shown once.
  await page.getByRole("link", { name: "Manage setup links" }).click();
  await page.getByRole("button", { name: "Create setup link" }).click();
  const link = (await page.locator("output#setup_link").innerText()).trim();
  assert.match(link, new RegExp(`^${srv.base}/setup/rc_setup_`));
  await shot(page, "console-setup-link");
  assert.deepEqual(problems, []);

  // The IT admin, in another browser (no operator cookie), opens the link.
  const admin = await freshPage(browser);
  await admin.page.goto(link);
  await admin.page.waitForURL(`${srv.base}/setup`);
  assert.ok(!admin.page.url().includes("rc_setup_"), "the token leaves the address bar");
  await shot(admin.page, "setup-pick-idp");
  await admin.page.getByLabel("Microsoft Entra ID").check();
  await admin.page.getByRole("button", { name: "Continue" }).click();

  // Step 2: the base URL and the token, each with a copy button; continuing needs a confirmation.
  const baseUrl = (await admin.page.locator("output#base_url").innerText()).trim();
  const token = (await admin.page.locator("output#token").innerText()).trim();
  assert.match(baseUrl, new RegExp(`^${srv.base}/scim/v2/`));
  assert.match(token, /^rc_scim_/);
  const next = admin.page.getByRole("button", { name: /Continue to the steps/ });
  assert.equal(await next.isDisabled(), true, "continuing waits for the confirmation");
  await admin.page.getByRole("button", { name: "Copy the token" }).click();
  await admin.page.getByRole("status").filter({ hasText: "Copied the token" }).waitFor();
  await shot(admin.page, "setup-token");
  await admin.page.getByLabel("I have copied the token").check();
  await next.click();

  // Steps 3 and 4: Entra's own field names, and the live panel waiting.
  await admin.page.locator("dt", { hasText: "Tenant URL" }).waitFor();
  await admin.page.locator("dt", { hasText: "Secret Token" }).waitFor();
  await admin.page.getByText("Waiting for the first request").waitFor();

  // Entra's Test Connection probe, then a user, sent over SCIM: they appear without a reload.
  const entra = scimClient(baseUrl, token, "Azure AD SCIM Client");
  const probe = await entra("GET", `/Users?filter=${encodeURIComponent('userName eq "2d1c5e40-6e0a-4b51-9e0f-3d5a3f0c9b11"')}`);
  assert.equal(probe.status, 200);
  const created = await entra("POST", "/Users", {
    schemas: ["urn:ietf:params:scim:schemas:core:2.0:User"],
    userName: "ada@acme.example",
    name: { givenName: "Ada", familyName: "Lovelace" },
    emails: [{ value: "ada@acme.example", type: "work", primary: true }],
    active: true,
  });
  assert.equal(created.status, 201);
  const panel = admin.page.locator("section.live ul");
  await panel.getByText("Microsoft Entra ID looked up a user by userName").waitFor({ timeout: 15_000 });
  await panel.locator("li", { hasText: "Microsoft Entra ID created a user" }).getByText("Answered 201").waitFor({ timeout: 15_000 });
  await shot(admin.page, "setup-live-panel");

  // A request that fails is explained, with its fix.
  const bad = await fetch(`${baseUrl}/Users`, { headers: { authorization: token, "user-agent": "Azure AD SCIM Client" } });
  assert.equal(bad.status, 401);
  await panel.getByText(/Bearer/).first().waitFor({ timeout: 15_000 });

  // Step 5: the user as it arrived.
  await admin.page.reload();
  await admin.page.getByRole("heading", { name: /ada@acme.example/ }).waitFor();

  // Step 6: a group arrives and is mapped to a role, its effect shown first.
  const group = await entra("POST", "/Groups", {
    schemas: ["urn:ietf:params:scim:schemas:core:2.0:Group"],
    displayName: "Engineering",
    members: [{ value: created.body.id }],
  });
  assert.equal(group.status, 201);
  await admin.page.reload();
  await admin.page.getByRole("button", { name: "Map Engineering" }).click();
  await admin.page.getByText("1 user gains admin").waitFor();
  await shot(admin.page, "setup-mapping-preview");
  await admin.page.getByRole("button", { name: "Save the mapping" }).click();
  assert.match(await flash(admin.page), /now get the role admin/);
  const users = await srv.api("GET", `/api/v1/organizations/${orgId}/users`);
  assert.deepEqual(users.data[0].roles, ["admin"]);
  assert.deepEqual(admin.problems, []);
  assert.deepEqual(problems, []);
});

test("a user named <script> renders as text", async () => {
  const org = await srv.api("POST", "/api/v1/organizations", { name: "<b>Bold</b> & co" });
  const issued = await srv.api("POST", `/api/v1/organizations/${org.id}/connections`, { idp: "okta" });
  const conn = issued.connection;
  const okta = scimClient(conn.scim_base_url, issued.token, "Okta SCIM Client 1.0.0");
  const r = await okta("POST", "/Users", {
    schemas: ["urn:ietf:params:scim:schemas:core:2.0:User"],
    userName: "xss@example.com",
    displayName: "<script>alert(1)</script>",
    active: true,
  });
  assert.equal(r.status, 201);
  const { page, problems } = await freshPage(browser);
  await signIn(page);
  await page.goto(`${srv.base}/console/organizations/${org.id}/users`);
  await page.getByText("<script>alert(1)</script>").waitFor();
  await page.goto(`${srv.base}/console/organizations/${org.id}`);
  await page.getByRole("heading", { name: "<b>Bold</b> & co" }).waitFor();
  assert.equal(await page.locator("b").count(), 0, "no markup from data");
  await page.goto(`${srv.base}/console/organizations/${org.id}/users/${r.body.id}`);
  await page.getByText('"displayName": "<script>alert(1)</script>"').waitFor();
  await shot(page, "console-user");
  assert.deepEqual(problems, [], "no alert, no CSP violation");
});

test("a role mapping's effect is shown before it is saved in the console", async () => {
  const org = await srv.api("POST", "/api/v1/organizations", { name: "Mapping Org" });
  await srv.api("POST", `/api/v1/organizations/${org.id}/roles`, { key: "viewer", name: "Viewer" });
  const issued = await srv.api("POST", `/api/v1/organizations/${org.id}/connections`, { idp: "okta" });
  const conn = issued.connection;
  const okta = scimClient(conn.scim_base_url, issued.token, "Okta SCIM Client 1.0.0");
  const ids = [];
  for (const name of ["a", "b", "c"]) {
    const u = await okta("POST", "/Users", {
      schemas: ["urn:ietf:params:scim:schemas:core:2.0:User"],
      userName: `${name}@example.com`,
      active: true,
    });
    ids.push(u.body.id);
  }
  await okta("POST", "/Groups", {
    schemas: ["urn:ietf:params:scim:schemas:core:2.0:Group"],
    displayName: "Readers",
    members: ids.slice(0, 2).map((value) => ({ value })),
  });
  const { page, problems } = await freshPage(browser);
  await signIn(page);
  await page.goto(`${srv.base}/console/connections/${conn.id}`);
  await page.getByText("Map a group to a role").click();
  await page.getByLabel("Value").fill("Readers");
  await page.getByRole("button", { name: "Preview mapping" }).click();
  await page.getByText("2 users gain viewer").waitFor();
  await shot(page, "console-mapping-preview");
  await page.getByRole("button", { name: "Save the mapping" }).click();
  assert.match(await flash(page), /grants viewer/);
  const users = await srv.api("GET", `/api/v1/organizations/${org.id}/users?role=viewer`);
  assert.equal(users.data.length, 2);
  assert.deepEqual(problems, []);
});

test("an expired link and a revoked link show a clear page and no data", async () => {
  const org = await srv.api("POST", "/api/v1/organizations", { name: "Secret Org" });
  const expired = await srv.api("POST", `/api/v1/organizations/${org.id}/setup-links`, {});
  // Expire it in the database (a link lasts 5 minutes at least).
  execFileSync("python3", [
    "-c",
    "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('UPDATE setup_links SET expires_us = 1 WHERE id = ?', (sys.argv[2],)); c.commit()",
    srv.db,
    expired.setup_link.id,
  ]);
  const { page, problems } = await freshPage(browser);
  const r1 = await page.goto(expired.url);
  assert.equal(r1.status(), 410);
  await page.getByText(/expired/).first().waitFor();
  assert.equal(await page.getByText("Secret Org").count(), 0);
  await shot(page, "setup-expired-link");

  const revoked = await srv.api("POST", `/api/v1/organizations/${org.id}/setup-links`, {});
  await srv.api("DELETE", `/api/v1/organizations/${org.id}/setup-links/${revoked.setup_link.id}`);
  const r2 = await page.goto(revoked.url);
  assert.equal(r2.status(), 410);
  await page.getByText(/revoked/).first().waitFor();
  const r3 = await page.goto(`${srv.base}/setup/rc_setup_notarealtoken`);
  assert.equal(r3.status(), 404);
  assert.deepEqual(problems, []);
});

test("the setup flow works with the keyboard alone", async () => {
  const org = await srv.api("POST", "/api/v1/organizations", { name: "Keyboard Org" });
  const link = await srv.api("POST", `/api/v1/organizations/${org.id}/setup-links`, {});
  const { page, problems } = await freshPage(browser);
  await page.goto(link.url);
  await page.waitForURL(`${srv.base}/setup`);
  // Tab to the first identity provider, pick Okta with the arrow keys, and continue.
  const focusOn = async (predicate, what) => {
    for (let i = 0; i < 40; i++) {
      await page.keyboard.press("Tab");
      if (await page.evaluate(predicate)) return;
    }
    throw new Error(`Tab never reached ${what}`);
  };
  await focusOn(() => document.activeElement?.name === "idp", "the identity providers");
  await page.keyboard.press("Space");
  assert.equal(await page.evaluate(() => document.activeElement.value), "okta");
  await focusOn(() => document.activeElement?.textContent?.trim() === "Continue", "Continue");
  await page.keyboard.press("Enter");
  await page.locator("output#token").waitFor();
  await focusOn(() => document.activeElement?.getAttribute("data-copy") === "token", "the token's copy button");
  await page.keyboard.press("Enter");
  await page.getByRole("status").filter({ hasText: "Copied the token" }).waitFor();
  await focusOn(() => document.activeElement?.id === "copied", "the confirmation");
  await page.keyboard.press("Space");
  await focusOn(() => document.activeElement?.id === "continue", "Continue to the steps");
  await page.keyboard.press("Enter");
  await page.locator("dt", { hasText: "SCIM connector base URL" }).waitFor();
  // The focused element is visibly outlined.
  await focusOn(() => document.activeElement?.getAttribute("data-copy")?.startsWith("field-"), "a copy button");
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(outline, "none");
  await shot(page, "setup-okta-steps");
  assert.deepEqual(problems, []);
});

test("pages send a CSP without inline script, refuse framing, and forms without their token are refused", async () => {
  const r = await fetch(`${srv.base}/console/sign-in`);
  const csp = r.headers.get("content-security-policy");
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.equal(r.headers.get("x-frame-options"), "DENY");
  const html = await r.text();
  assert.doesNotMatch(html, /<script>(?!<\/script>)/, "no inline script");

  const { page } = await freshPage(browser);
  await signIn(page);
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === "rollcall_console");
  assert.ok(session.httpOnly, "the session cookie is HttpOnly");
  assert.equal(session.sameSite, "Strict");
  const forged = await fetch(`${srv.base}/console/organizations`, {
    method: "POST",
    redirect: "manual",
    headers: { cookie: `rollcall_console=${session.value}`, "content-type": "application/x-www-form-urlencoded" },
    body: "name=Forged",
  });
  assert.equal(forged.status, 403);
  const orgs = await srv.api("GET", "/api/v1/organizations");
  assert.ok(!orgs.data.some((o) => o.name === "Forged"));
  // Signing out ends the session.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(/sign-in/);
  const after = await fetch(`${srv.base}/console/organizations`, {
    redirect: "manual",
    headers: { cookie: `rollcall_console=${session.value}` },
  });
  assert.equal(after.status, 303);
});
