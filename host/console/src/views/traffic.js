// Live traffic, from `/metrics` scraped every second: requests per second and status classes
// per route, p50/p99 of the time to the response head per route, plugin hook latency, and a
// chart of the gateway's requests per second over the last minute.

import { call, Refused } from "../api.js";
import { h, table } from "../dom.js";
import { lineChart } from "../chart.js";
import { parse, sum, rates, buckets, delta, quantile } from "../metrics.js";

const EVERY_MS = 1000;
const POINTS = 60;

function ms(seconds) {
  return seconds === null ? "—" : `${(seconds * 1000).toFixed(seconds < 0.01 ? 2 : 1)} ms`;
}

function classOf(status) {
  const s = Number(status);
  return Number.isFinite(s) ? `${Math.floor(s / 100)}xx` : "other";
}

/** What one scrape adds to the view, against the previous one. */
function frame(samples, prev, seconds) {
  const byRoute = sum(samples, "weir_requests_total", (l) => l.route ?? null);
  const byClass = sum(samples, "weir_requests_total", (l) => (l.route ? `${l.route}\u0000${classOf(l.status)}` : null));
  const lat = buckets(samples, "weir_request_duration_seconds", (l) => l.route ?? null);
  const hooks = buckets(samples, "weir_plugin_hook_duration_seconds", (l) => (l.plugin ? `${l.plugin} ${l.phase ?? ""}`.trim() : null));
  return {
    byRoute, byClass, lat, hooks,
    routeRates: rates(byRoute, prev?.byRoute, seconds),
    classRates: rates(byClass, prev?.byClass, seconds),
    latWindow: delta(lat, prev?.lat),
    hookWindow: delta(hooks, prev?.hooks),
  };
}

function render(f, history, into) {
  const total = [...f.routeRates.values()].reduce((a, b) => a + b, 0);
  const routes = [...f.byRoute.keys()].sort();
  const rate = (r, c) => (f.classRates.get(`${r}\u0000${c}`) ?? 0).toFixed(1);
  // The window's quantiles when it saw requests, else those since the start.
  const q = (win, all, k, p) => quantile(p, win.get(k) ?? new Map()) ?? quantile(p, all.get(k) ?? new Map());
  into.replaceChildren(
    h("p", { class: "big", id: "total-rps" }, `${total.toFixed(1)} requests/s`),
    lineChart(history, "Requests per second, last minute"),
    table("Routes", ["Route", "Requests/s", "2xx/s", "3xx/s", "4xx/s", "5xx/s", "p50", "p99", "Requests"],
      routes.map((r) => [r, (f.routeRates.get(r) ?? 0).toFixed(1), rate(r, "2xx"), rate(r, "3xx"), rate(r, "4xx"), rate(r, "5xx"),
        ms(q(f.latWindow, f.lat, r, 0.5)), ms(q(f.latWindow, f.lat, r, 0.99)), String(f.byRoute.get(r))]),
      { id: "routes-traffic" }),
    table("Plugin hooks", ["Plugin and phase", "p50", "p99"],
      [...f.hooks.keys()].sort().map((k) => [k, ms(q(f.hookWindow, f.hooks, k, 0.5)), ms(q(f.hookWindow, f.hooks, k, 0.99))])),
  );
}

export async function traffic(signal) {
  const live = h("div", { id: "live", "aria-live": "off" }, h("p", {}, "Reading /metrics…"));
  const history = [];
  let prev = null;
  let at = performance.now();
  const tick = async () => {
    if (signal.aborted) return;
    try {
      const samples = parse(await call("/metrics", { text: true }));
      const now = performance.now();
      const f = frame(samples, prev, (now - at) / 1000);
      if (prev) {
        history.push([...f.routeRates.values()].reduce((a, b) => a + b, 0));
        if (history.length > POINTS) history.shift();
      }
      render(f, history, live);
      prev = f;
      at = now;
    } catch (e) {
      if (e instanceof Refused) throw e;
      live.replaceChildren(h("p", { role: "alert" }, `Reading /metrics failed: ${e.message}`));
    }
    if (!signal.aborted) setTimeout(tick, EVERY_MS);
  };
  tick();
  return [h("h1", {}, "Live traffic"), h("p", {}, "Scraped from /metrics every second."), live];
}
