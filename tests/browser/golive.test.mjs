// The go-live pages in a real browser: a connection put into staging (its badge on the connection
// and organization pages), the match report (a CSV pasted, and chosen with the file picker, which
// fills the text box by script), and Activate, which asks first and takes the connection live.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, launchBrowser, freshPage, scimClient, shot, signIn, flash, submit } from "./harness.mjs";

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

/** The count a match report shows in its summary (`count-matched`, `count-app-only`, …). */
async function count(page, id) {
  return (await page.locator(`#count-${id}`).innerText()).trim().split(/\s/)[0];
}

test("a connection put into staging shows its badge, its match report takes a pasted and a picked CSV, and Activate asks first and takes it live", async () => {
  const org = await srv.api("POST", "/api/v1/organizations", { name: "Staging Org" });
  const issued = await srv.api("POST", `/api/v1/organizations/${org.id}/connections`, { idp: "okta", name: "Okta prod" });
  const conn = issued.connection;
  const okta = scimClient(conn.scim_base_url, issued.token, "Okta SCIM Client 1.0.0");
  const { page, problems, dialogs } = await freshPage(browser);
  await signIn(page, srv);
  const connUrl = `${srv.base}/console/connections/${conn.id}`;
  await page.goto(connUrl);
  assert.equal(await page.locator("#staging-badge").count(), 0, "a live connection has no staging badge");

  // Putting it into staging asks first: dismissed, nothing changes.
  const stage = page.getByRole("button", { name: "Put back into staging" });
  dialogs.accept = false;
  await stage.click();
  assert.equal(dialogs.confirms.length, 1);
  assert.match(dialogs.confirms[0], /^Put this connection back into staging\?/);
  assert.equal(page.url(), connUrl, "a dismissed confirmation sends nothing");
  assert.equal((await srv.api("GET", `/api/v1/connections/${conn.id}`)).staging, false);
  dialogs.accept = true;
  await submit(page, stage);
  assert.match(await flash(page), /The connection is in staging/);
  await page.locator("#staging-badge").waitFor();
  assert.equal((await page.locator("#staging-badge").innerText()).trim(), "staging");
  assert.equal((await srv.api("GET", `/api/v1/connections/${conn.id}`)).staging, true);
  await shot(page, "console-connection-staging");

  // The organization's page marks it too.
  await page.getByRole("link", { name: "Staging Org" }).click();
  const row = page.locator("tr", { has: page.getByRole("link", { name: "Okta prod" }) });
  await row.locator(".status-warn", { hasText: "staging" }).waitFor();

  // The identity provider pushes; the application hears nothing yet.
  for (const name of ["ann", "bob"]) {
    const r = await okta("POST", "/Users", {
      schemas: ["urn:ietf:params:scim:schemas:core:2.0:User"],
      userName: `${name}@acme.example`,
      emails: [{ value: `${name}@acme.example`, type: "work", primary: true }],
      active: true,
    });
    assert.equal(r.status, 201);
  }
  assert.equal((await srv.api("GET", `/api/v1/organizations/${org.id}/users`)).data.length, 0);

  // The match report, from the connection page.
  await page.goto(connUrl);
  await page.getByRole("link", { name: "Match report" }).click();
  await page.getByRole("heading", { name: /Match report/ }).waitFor();
  await page.locator("dd", { hasText: "none yet" }).waitFor();

  // A CSV pasted: ann matches (the app has her as admin, the IdP gives no role), bob is new, the
  // app's third account would lose access; its odd address is shown as text.
  const pasted = "email,roles\nann@acme.example,admin\n<b>zed</b>@acme.example,\n";
  await page.getByLabel("or paste it").fill(pasted);
  await submit(page, page.getByRole("button", { name: "Upload and compare" }));
  assert.match(await flash(page), /2 accounts uploaded/);
  assert.equal(await count(page, "matched"), "1");
  assert.equal(await count(page, "idp-only"), "1");
  assert.equal(await count(page, "app-only"), "1");
  assert.equal(await count(page, "ambiguous"), "0");
  assert.equal(await count(page, "roles"), "1");
  await page.locator("section", { has: page.getByRole("heading", { name: /In the app only/ }) }).getByText("<b>zed</b>@acme.example").waitFor();
  await page.locator("section", { has: page.getByRole("heading", { name: /In the IdP only/ }) }).getByText("bob@acme.example").waitFor();
  assert.equal(await page.locator("main b").count(), 0, "no markup from the upload");

  // A CSV file chosen with the file picker fills the text box (by the page's script) and replaces
  // the upload.
  const file = "email,external_id,roles\nann@acme.example,,\nbob@acme.example,,\n";
  const chooser = page.waitForEvent("filechooser");
  await page.getByLabel("CSV file").click();
  await (await chooser).setFiles({ name: "accounts.csv", mimeType: "text/csv", buffer: Buffer.from(file) });
  const box = page.getByLabel("or paste it");
  await page.waitForFunction(() => document.getElementById("csv").value.length > 0);
  assert.equal(await box.inputValue(), file, "the file's text is in the box");
  await shot(page, "console-match-report-file");
  await submit(page, page.getByRole("button", { name: "Upload and compare" }));
  assert.match(await flash(page), /2 accounts uploaded/);
  assert.equal(await count(page, "matched"), "2");
  assert.equal(await count(page, "idp-only"), "0");
  assert.equal(await count(page, "app-only"), "0");
  assert.equal(await count(page, "roles"), "0");
  await shot(page, "console-match-report");

  // Activate asks first: dismissed, the connection stays in staging.
  const activate = page.getByRole("button", { name: "Activate" });
  dialogs.accept = false;
  await activate.click();
  assert.equal(dialogs.confirms.length, 3);
  assert.match(dialogs.confirms[2], /^Go live\?/);
  assert.equal((await srv.api("GET", `/api/v1/connections/${conn.id}`)).staging, true);
  dialogs.accept = true;
  await submit(page, activate);
  assert.equal(page.url(), connUrl);
  assert.match(await flash(page), /The connection is live: the application received 2 users/);
  assert.equal(await page.locator("#staging-badge").count(), 0);
  await page.getByRole("button", { name: "Put back into staging" }).waitFor();
  assert.equal((await srv.api("GET", `/api/v1/connections/${conn.id}`)).staging, false);
  const users = await srv.api("GET", `/api/v1/organizations/${org.id}/users`);
  assert.deepEqual(users.data.map((u) => u.user_name).sort(), ["ann@acme.example", "bob@acme.example"]);
  await page.goto(`${srv.base}/console/organizations/${org.id}`);
  assert.equal(await page.locator("tr", { hasText: "Okta prod" }).locator(".status-warn", { hasText: "staging" }).count(), 0);
  assert.deepEqual(problems, [], "no page error, no CSP violation");
});
