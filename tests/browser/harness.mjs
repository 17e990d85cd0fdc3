// A real `rollcall serve` on a fresh SQLite database, and a headless Chromium to drive it.
//
// ROLLCALL_BIN: the binary (default: the workspace's debug build); CHROMIUM: the browser
// (default: `chromium` on PATH, Debian's package). Screenshots go to ./screenshots.

import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..", "..");
const targetDir = process.env.CARGO_TARGET_DIR || join(root, "target");
export const BIN = process.env.ROLLCALL_BIN || join(targetDir, "debug", "rollcall");
export const SHOTS = join(here, "screenshots");

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

function chromiumPath() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  for (const name of ["chromium", "chromium-browser"]) {
    try {
      return execFileSync("which", [name], { encoding: "utf8" }).trim();
    } catch {
      /* try the next name */
    }
  }
  throw new Error("no Chromium found: install Debian's chromium package or set CHROMIUM");
}

/**
 * Starts a server; `stop()` ends it and removes its database. `env`: settings for it
 * (`ROLLCALL_…` variables; the caller's own are never passed on).
 */
export async function startServer({ env: settings = {} } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "rollcall-browser-"));
  const db = join(dir, "rollcall.db");
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const env = { ...process.env, RUST_LOG: process.env.RUST_LOG || "warn" };
  for (const k of Object.keys(env)) if (k.startsWith("ROLLCALL_")) delete env[k];
  Object.assign(env, settings);
  const cli = (...args) => execFileSync(BIN, ["--database", db, ...args], { encoding: "utf8", env });
  const child = spawn(BIN, ["--database", db, "serve", "--listen", `127.0.0.1:${port}`, "--public-url", base, "--no-bootstrap"], {
    env,
    stdio: ["ignore", "inherit", "inherit"],
  });
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`rollcall serve exited with ${child.exitCode}`);
    try {
      const r = await fetch(`${base}/readyz`);
      if (r.ok) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) throw new Error("rollcall serve did not become ready within 30 s");
    await new Promise((r) => setTimeout(r, 100));
  }
  const key = JSON.parse(cli("api-key", "create", "--name", "browser tests", "--json")).secret;
  return {
    base,
    db,
    key,
    cli,
    /** A management API call with the operator key. */
    async api(method, path, body) {
      const r = await fetch(`${base}${path}`, {
        method,
        headers: { authorization: `Bearer ${key}`, ...(body ? { "content-type": "application/json" } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
      const text = await r.text();
      if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
      return text ? JSON.parse(text) : null;
    },
    async stop() {
      child.kill("SIGTERM");
      await new Promise((r) => (child.exitCode !== null ? r() : child.once("exit", r)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A SCIM client of one connection, sending what an identity provider sends. */
export function scimClient(baseUrl, token, userAgent) {
  return async (method, path, body) => {
    const r = await fetch(`${baseUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        "user-agent": userAgent,
        accept: "application/scim+json",
        ...(body ? { "content-type": "application/scim+json" } : {}),
      },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null };
  };
}

export async function launchBrowser() {
  mkdirSync(SHOTS, { recursive: true });
  return chromium.launch({ executablePath: chromiumPath(), headless: true, args: ["--no-sandbox"] });
}

/**
 * A new context (no cookies) whose pages fail the test on a JavaScript dialog other than a
 * confirmation, or a page error. Confirmations are recorded in `dialogs.confirms` and accepted,
 * or dismissed while `dialogs.accept` is false.
 */
export async function freshPage(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  const dialogs = { confirms: [], accept: true };
  page.on("dialog", async (d) => {
    if (d.type() === "confirm") {
      dialogs.confirms.push(d.message());
      return dialogs.accept ? d.accept() : d.dismiss();
    }
    problems.push(`unexpected ${d.type()} dialog: ${d.message()}`);
    return d.dismiss();
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    // A page answered 404 or 410 on purpose is logged as a failed load; sub-resources are checked
    // below, by their answers.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(`console error: ${m.text()}`);
  });
  page.on("response", (r) => {
    if (r.request().resourceType() !== "document" && r.status() >= 400) {
      problems.push(`${r.request().resourceType()} ${r.url()} answered ${r.status()}`);
    }
  });
  return { context, page, problems, dialogs };
}

export async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** Signs an operator in on `page` with the server's API key. */
export async function signIn(page, srv) {
  await page.goto(`${srv.base}/console`);
  if (!/\/console\/sign-in/.test(page.url())) throw new Error(`expected the sign-in page, got ${page.url()}`);
  await page.getByLabel("Operator API key").fill(srv.key);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(/\/console\/organizations/);
}

/** The message a form left at the top of the page. */
export async function flash(page) {
  return (await page.locator(".flash").innerText()).trim();
}

/**
 * Clicks what submits a form and waits for the page it leads to (a form posted to the page it
 * came from lands on the same address, so waiting for the address would not do).
 */
export async function submit(page, target) {
  await Promise.all([page.waitForEvent("load"), target.click()]);
}
