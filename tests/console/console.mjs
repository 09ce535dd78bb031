// The web console in a real browser: Playwright's library driving Debian's Chromium headless
// against a real gateway (started by `tests/e2e/console.rs`, which passes everything in the
// environment). Every check throws on failure; the last line printed is a JSON summary.
//
//   CONSOLE   the console's URL (http://127.0.0.1:ADMIN/ui)
//   TOKEN     the admin token           GATEWAY  the main listener    API_KEY  a key of its route
//   CONFIG    the gateway's config file BROKEN   a broken config to write over it
//   PLUGIN    a plugin to upload a broken build of, and the header its route adds (HEADER)
//   SCREENSHOTS  where the screenshots go   CHROMIUM  the browser
//   MODULES   the node_modules with playwright-core and axe-core

import assert from "node:assert/strict";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const env = (k) => {
  const v = process.env[k];
  assert.ok(v, `${k} is not set`);
  return v;
};
// The packages `cargo xtask test` installs in target/guest-tools/browser (MODULES).
const require = createRequire(join(env("MODULES"), "x.js"));
const { chromium } = require("playwright-core");
const CONSOLE = env("CONSOLE");
const ORIGIN = new URL(CONSOLE).origin;
const SHOTS = env("SCREENSHOTS");
mkdirSync(SHOTS, { recursive: true });
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const VIEWS = ["overview", "routes", "plugins", "upstreams", "traffic", "mcp", "llm", "audit"];
const summary = { views: {}, screenshots: [] };

/** Every request the page makes must go to the gateway's admin origin. */
function onlyOwnOrigin(page, seen) {
  page.on("request", (r) => {
    seen.push(r.url());
    assert.ok(r.url().startsWith(ORIGIN) || r.url().startsWith("data:"), `fetched from outside: ${r.url()}`);
  });
}

async function signIn(page, token) {
  await page.goto(CONSOLE);
  await page.getByLabel("Admin token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
}

/** axe-core's WCAG 2 A and AA rules (labels, names, contrast, landmarks…) on the page. */
async function accessible(page, what) {
  await page.evaluate(AXE);
  const result = await page.evaluate(() =>
    window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa"] } }));
  const problems = result.violations.map((v) => `${v.id}: ${v.help} (${v.nodes.length}: ${v.nodes[0]?.target})`);
  assert.deepEqual(problems, [], `${what}: accessibility violations`);
  return result.passes.length;
}

async function view(page, id, width, height) {
  await page.setViewportSize({ width, height });
  await page.goto(`${CONSOLE}#/${id}`);
  await page.locator(`#view-${id}`).waitFor({ timeout: 30_000 });
  // No horizontal scrolling of the page itself: wide tables scroll in their own region.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `${id} at ${width}px: the page scrolls sideways by ${overflow}px`);
  const file = `${SHOTS}/${id}-${width}.png`;
  await page.screenshot({ path: file, fullPage: true });
  summary.screenshots.push(file);
}

async function tokenRequired(browser) {
  const page = await browser.newPage();
  await page.goto(CONSOLE);
  await page.getByLabel("Admin token").waitFor();
  summary.login_prompt = true;
  await signIn(page, "not-the-token");
  await page.getByRole("alert").filter({ hasText: "The token was refused." }).waitFor();
  assert.equal(await page.locator("#view-overview").count(), 0, "a wrong token showed data");
  summary.wrong_token_refused = true;
  await page.close();
}

async function everyView(page) {
  for (const id of VIEWS) {
    for (const [w, h] of [[1280, 800], [390, 844]]) await view(page, id, w, h);
    summary.views[id] = { axe_rules_passed: await accessible(page, id) };
  }
  // Live data in each view.
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.goto(`${CONSOLE}#/overview`);
  await page.locator("#view-overview").getByText("Active generation").waitFor();
  await page.goto(`${CONSOLE}#/routes`);
  await page.getByRole("heading", { name: "app", level: 2 }).waitFor();
  await page.getByRole("list", { name: "Chain of app" }).getByRole("heading", { name: /headers/ }).waitFor();
  await page.getByRole("list", { name: "Chain of flaky" }).getByText("fail-open").waitFor();
  await page.goto(`${CONSOLE}#/plugins`);
  await page.locator("#plugins-table tbody tr").first().waitFor();
  const plugins = await page.locator("#plugins-table tbody tr").count();
  assert.ok(plugins >= 2, `plugins table has ${plugins} rows`);
  // The trapping plugin's last failure, with its route and reason.
  const probe = page.locator("#plugins-table tbody tr").filter({ hasText: "probe" });
  await probe.getByText("on flaky").click();
  summary.failure_reason = await probe.locator("details li").first().textContent();
  assert.match(summary.failure_reason, /flaky: .*trap/);
  await page.goto(`${CONSOLE}#/upstreams`);
  await page.getByText("healthy").first().waitFor();
  await page.goto(`${CONSOLE}#/mcp`);
  await page.getByLabel("Credential of the principal").fill(env("API_KEY"));
  await page.getByRole("button", { name: "Show catalog" }).click();
  await page.locator("#catalog-count").waitFor();
  summary.mcp_tools = (await page.getByRole("table", { name: "Tools of py" }).locator("tbody th").allTextContents()).sort();
  await page.screenshot({ path: `${SHOTS}/mcp-catalog-1280.png`, fullPage: true });
  await page.goto(`${CONSOLE}#/llm`);
  await page.locator("#llm-usage tbody tr").first().waitFor();
  const budget = await page.locator("#llm-budgets tbody tr").filter({ hasText: "alice" }).locator("td").allTextContents();
  summary.llm_remaining = budget[2];
  await page.goto(`${CONSOLE}#/audit`);
  await page.locator("#audit-table tbody tr").first().waitFor();
  await page.getByLabel("Plugin").fill("no-such-plugin");
  await page.locator("#audit-count").filter({ hasText: /^0 of/ }).waitFor();
  await page.getByLabel("Plugin").fill("guardrails");
  summary.audit_rows = await page.locator("#audit-table tbody tr").count();
  assert.ok(summary.audit_rows >= 1, "no guardrails audit record");
}

async function keyboard(page) {
  await page.setViewportSize({ width: 1280, height: 800 });
  // A fresh load, so focus starts at the top of the document.
  await page.goto("about:blank");
  await page.goto(`${CONSOLE}#/overview`);
  await page.locator("#view-overview").waitFor();
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "Skip to content");
  // Tab along the navigation to "Routes" and follow it with Enter.
  for (let i = 0; i < 10; i++) {
    await page.keyboard.press("Tab");
    if ((await page.evaluate(() => document.activeElement.textContent)) === "Routes") break;
  }
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "Routes");
  await page.keyboard.press("Enter");
  await page.locator("#view-routes").waitFor();
  summary.keyboard = true;
}

async function liveChart(page) {
  await page.goto(`${CONSOLE}#/traffic`);
  const chart = page.locator("svg.chart");
  await chart.waitFor();
  const gateway = env("GATEWAY");
  const key = env("API_KEY");
  // A bounded load loop (at most 3,000 requests or 60 s) until the chart shows it.
  let sent = 0;
  let moving = false;
  const started = Date.now();
  while (sent < 3000 && Date.now() - started < 60_000 && !moving) {
    await Promise.all(Array.from({ length: 20 }, () =>
      fetch(`${gateway}/app/hello`, { headers: { "x-api-key": key } }).then((r) => r.arrayBuffer())));
    sent += 20;
    const last = Number(await chart.getAttribute("data-last"));
    const points = Number(await chart.getAttribute("data-points"));
    moving = points >= 2 && last > 0;
  }
  assert.ok(moving, `the chart did not move after ${sent} requests`);
  summary.chart = { requests_sent: sent, last_rate: Number(await chart.getAttribute("data-last")) };
  await page.locator("#routes-traffic tbody tr").filter({ hasText: "app" }).waitFor();
  await page.screenshot({ path: `${SHOTS}/traffic-live-1280.png` });
}

async function brokenConfig(page) {
  const config = env("CONFIG");
  const good = readFileSync(config, "utf8");
  writeFileSync(config, readFileSync(env("BROKEN"), "utf8"));
  await page.goto(`${CONSOLE}#/overview`);
  await page.locator("#view-overview").waitFor();
  page.once("dialog", (d) => d.accept());
  await page.getByRole("button", { name: "Reload configuration" }).click();
  const errors = page.locator("#reload-result .errors li");
  await errors.first().waitFor();
  const text = await errors.allTextContents();
  assert.ok(text.some((t) => /weir\.toml:\d+:\d+/.test(t)), `no file:line:col in ${text}`);
  summary.reload_errors = text;
  await page.screenshot({ path: `${SHOTS}/reload-error-1280.png` });
  writeFileSync(config, good);
  page.once("dialog", (d) => d.accept());
  await page.getByRole("button", { name: "Reload configuration" }).click();
  await page.locator("#reload-result").getByText(/is active/).waitFor();
}

async function brokenPlugin(page) {
  const plugin = env("PLUGIN");
  await page.goto(`${CONSOLE}#/plugins`);
  await page.locator("#view-plugins").waitFor();
  await page.getByLabel(`New build of ${plugin}`).setInputFiles({
    name: `${plugin}.wasm`, mimeType: "application/wasm", buffer: Buffer.from("not a component"),
  });
  page.once("dialog", (d) => d.accept());
  await page.getByRole("button", { name: `Upload ${plugin}` }).click();
  const result = page.locator(`#upload-${plugin}-result`);
  await result.getByRole("alert").waitFor();
  const text = await result.textContent();
  assert.match(text, /keeps serving/);
  assert.match(text, new RegExp(plugin));
  summary.upload_error = text;
  // The old build still serves: its header is on the route's answers.
  const r = await fetch(`${env("GATEWAY")}/app/after-upload`, { headers: { "x-api-key": env("API_KEY") } });
  assert.equal(r.status, 200);
  assert.equal(r.headers.get(env("HEADER")), "yes", "the old plugin stopped serving");
  await page.screenshot({ path: `${SHOTS}/upload-error-1280.png` });
}

const browser = await chromium.launch({ executablePath: env("CHROMIUM"), args: ["--no-sandbox"] });
try {
  await tokenRequired(browser);
  const page = await browser.newPage();
  const seen = [];
  onlyOwnOrigin(page, seen);
  page.on("pageerror", (e) => { throw e; });
  await signIn(page, env("TOKEN"));
  await page.locator("#view-overview").waitFor();
  try {
    await everyView(page);
    await keyboard(page);
    await liveChart(page);
    await brokenConfig(page);
    await brokenPlugin(page);
  } catch (e) {
    // What the page showed when the check failed, for the test's log.
    await page.screenshot({ path: `${SHOTS}/failure.png`, fullPage: true }).catch(() => {});
    console.error(`page ${page.url()}:\n${await page.locator("main").innerText().catch(() => "?")}`);
    throw e;
  }
  summary.requests_seen = seen.length;
  summary.origins = [...new Set(seen.map((u) => new URL(u).origin))];
} finally {
  await browser.close();
}
console.log(JSON.stringify(summary));
