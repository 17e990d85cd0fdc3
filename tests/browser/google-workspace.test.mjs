// The organization page's "Connect Google Workspace" form in a real browser: a key that is not a
// usable service account key is refused with a message saying why, and creates nothing. (No real
// Google is reachable here: a good key is covered over a socket, against a fake Google, in
// crates/server/tests/console.rs.)

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, launchBrowser, freshPage, shot, signIn, flash, submit } from "./harness.mjs";

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

test("Connect Google Workspace refuses a bad key with a clear message and creates nothing", async () => {
  const org = await srv.api("POST", "/api/v1/organizations", { name: "Google Org" });
  const { page, problems } = await freshPage(browser);
  await signIn(page, srv);
  const orgUrl = `${srv.base}/console/organizations/${org.id}`;

  // The private key's text must never come back on the page.
  const secret = "MIIBbadbadbadSECRETPART0";
  const serviceAccount = (body) =>
    JSON.stringify({
      type: "service_account",
      client_email: "sync@project.iam.gserviceaccount.com",
      private_key: `-----BEGIN PRIVATE KEY-----\n${body}\n-----END PRIVATE KEY-----\n`,
    });
  const cases = [
    ["not JSON at all", /^Not done: the credentials are not a Google service account key \(JSON with client_email and private_key\)/],
    [JSON.stringify({ type: "authorized_user", client_id: "x", client_secret: "y", refresh_token: "z" }), /^Not done: the credentials are not a Google service account key .*missing field `client_email`/],
    [
      JSON.stringify({ type: "authorized_user", client_email: "sync@p.iam.gserviceaccount.com", private_key: "x" }),
      /^Not done: the credentials are of type "authorized_user", not a service account key \("service_account"\)/,
    ],
    [serviceAccount(`${secret}!`), /^Not done: the credentials' private_key is not a PEM-encoded key$/],
    [serviceAccount(secret), /^Not done: the credentials' private_key is not a usable RSA key/],
  ];
  for (const [key, why] of cases) {
    await page.goto(orgUrl);
    const form = page.locator("details", { hasText: "Connect Google Workspace" });
    await form.locator("summary").click();
    await form.getByLabel("Admin to act as").fill("admin@acme.example");
    await form.getByLabel(/Service account key/).fill(key);
    await form.getByLabel(/Organizational units/).fill("/Engineering");
    await form.getByLabel(/Sync every/).fill("30");
    await submit(page, form.getByRole("button", { name: "Connect Google Workspace" }));
    assert.equal(page.url(), orgUrl);
    const message = await flash(page);
    assert.match(message, why);
    assert.equal(await page.locator(".flash").getAttribute("role"), "alert", "the refusal is announced");
    assert.ok(!(await page.content()).includes(secret), "the key is not echoed back");
    await page.getByText("No connection yet.").waitFor();
    assert.equal((await srv.api("GET", `/api/v1/organizations/${org.id}/connections`)).data.length, 0, `nothing created for: ${key}`);
  }
  await shot(page, "console-google-workspace-refused");
  assert.deepEqual(problems, [], "no page error, no CSP violation");
});
