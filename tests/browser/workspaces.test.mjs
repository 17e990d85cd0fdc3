// Workspaces in a real browser: the organization page's Workspaces section (create, the default
// workspace setting), a group → workspace mapping on the connection page (previewed, then saved,
// then deleted after a confirmation) and a user's workspaces on the user page.

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

/** The text of a user page's Workspaces entry. */
async function workspacesOf(page, orgId, userId) {
  await page.goto(`${srv.base}/console/organizations/${orgId}/users/${userId}`);
  return (await page.locator("dt:text-is('Workspaces') + dd").innerText()).trim();
}

test("workspaces are created and a default chosen on the organization page, a group mapped to one on the connection page after a preview, and shown on the user page", async () => {
  const org = await srv.api("POST", "/api/v1/organizations", { name: "Workspace Org" });
  const issued = await srv.api("POST", `/api/v1/organizations/${org.id}/connections`, { idp: "okta" });
  const conn = issued.connection;
  const okta = scimClient(conn.scim_base_url, issued.token, "Okta SCIM Client 1.0.0");
  const ids = {};
  for (const name of ["ada", "bob"]) {
    const r = await okta("POST", "/Users", {
      schemas: ["urn:ietf:params:scim:schemas:core:2.0:User"],
      userName: `${name}@acme.example`,
      active: true,
    });
    assert.equal(r.status, 201);
    ids[name] = r.body.id;
  }
  const g = await okta("POST", "/Groups", {
    schemas: ["urn:ietf:params:scim:schemas:core:2.0:Group"],
    displayName: "Sales",
    members: [{ value: ids.ada }],
  });
  assert.equal(g.status, 201);

  const { page, problems, dialogs } = await freshPage(browser);
  await signIn(page, srv);
  const orgUrl = `${srv.base}/console/organizations/${org.id}`;
  await page.goto(orgUrl);
  await page.getByRole("heading", { name: "Workspaces" }).waitFor();
  assert.equal(await workspacesOf(page, org.id, ids.ada), "none");

  // Two workspaces, one of them named with markup (shown as text).
  await page.goto(orgUrl);
  for (const [key, name] of [["sales", "<i>Sales</i>"], ["everyone", "Everyone"]]) {
    await page.getByText("Create a workspace").click();
    await page.locator("#ws_key").fill(key);
    await page.locator("#ws_name").fill(name);
    await submit(page, page.getByRole("button", { name: "Create workspace" }));
    assert.match(await flash(page), new RegExp(key));
  }
  const table = page.locator("table", { has: page.locator("caption", { hasText: "Workspaces" }) });
  await table.locator("tr", { hasText: "sales" }).getByRole("cell", { name: "<i>Sales</i>", exact: true }).waitFor();
  assert.equal(await page.locator("main i").count(), 0, "no markup from data");

  // The default workspace: every active user is a member.
  await page.getByLabel(/Default workspace/).selectOption({ label: "everyone — Everyone" });
  await submit(page, page.getByRole("button", { name: "Save workspace settings" }));
  assert.match(await flash(page), /Default workspace: everyone; a workspace for every group: off/);
  await table.getByRole("cell", { name: "everyone (default)" }).waitFor();
  assert.equal(await page.getByLabel(/Default workspace/).inputValue(), (await srv.api("GET", `/api/v1/organizations/${org.id}/workspaces/everyone`)).id);
  const settings = await srv.api("GET", `/api/v1/organizations/${org.id}/workspace-settings`);
  assert.equal(settings.default_workspace, "everyone");
  await shot(page, "console-organization-workspaces");
  assert.equal(await workspacesOf(page, org.id, ids.ada), "everyone");
  assert.equal(await workspacesOf(page, org.id, ids.bob), "everyone");

  // A mapping: previewed first (nothing saved), then saved.
  const connUrl = `${srv.base}/console/connections/${conn.id}`;
  await page.goto(connUrl);
  const form = page.locator("details", { hasText: "Map a group to a workspace" });
  await form.getByText("Map a group to a workspace").click();
  await form.getByLabel("Value").fill("Sales");
  await form.getByLabel("Workspace").selectOption("sales");
  await form.getByRole("button", { name: "Preview mapping" }).click();
  await page.getByRole("heading", { name: "Make the members of the group “Sales” members of sales?" }).waitFor();
  await page.getByText("1 user gains <i>Sales</i>").waitFor();
  await shot(page, "console-workspace-mapping-preview");
  assert.equal((await srv.api("GET", `/api/v1/connections/${conn.id}/workspace-mappings`)).data.length, 0, "a preview saves nothing");
  await submit(page, page.getByRole("button", { name: "Save the mapping" }));
  assert.equal(page.url(), connUrl);
  assert.match(await flash(page), /grants the workspace sales/);
  const mappings = page.locator("table", { has: page.locator("caption", { hasText: "Workspace mappings" }) });
  await mappings.locator("tr", { hasText: "“Sales”" }).getByRole("cell", { name: "sales", exact: true }).waitFor();
  assert.equal((await srv.api("GET", `/api/v1/connections/${conn.id}/workspace-mappings`)).data.length, 1);

  // The user page shows the workspaces (keys, sorted); the directory carries them too.
  assert.equal(await workspacesOf(page, org.id, ids.ada), "everyone, sales");
  assert.equal(await workspacesOf(page, org.id, ids.bob), "everyone");
  const ada = await srv.api("GET", `/api/v1/organizations/${org.id}/users/${ids.ada}`);
  assert.deepEqual(ada.workspaces, ["everyone", "sales"]);

  // Deleting the mapping asks first; ada leaves the workspace.
  await page.goto(connUrl);
  await submit(page, mappings.getByRole("button", { name: "Delete workspace mapping of Sales" }));
  assert.match(dialogs.confirms.at(-1), /^Delete this mapping\? Users leave the workspace at once\./);
  assert.match(await flash(page), /Workspace mapping deleted/);
  assert.equal(await mappings.count(), 0);
  assert.equal(await workspacesOf(page, org.id, ids.ada), "everyone");
  assert.deepEqual(problems, [], "no page error, no CSP violation");
});
