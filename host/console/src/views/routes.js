// Routes, in match order: match, rewrite, upstream, and the chain in order.

import { call } from "../api.js";
import { h, dl, code } from "../dom.js";

function matchText(m) {
  const parts = [];
  if (m.host) parts.push(`host ${m.host}`);
  if (m.path_prefix) parts.push(`path prefix ${m.path_prefix}`);
  if (m.path) parts.push(`path ${m.path}`);
  if (m.methods) parts.push(`methods ${m.methods.join(", ")}`);
  if (m.headers?.length) parts.push(`headers ${m.headers.join(", ")}`);
  return parts.length ? parts.join("; ") : "everything";
}

function grants(g) {
  if (!g) return "—";
  const out = [];
  if (g.kv) out.push(`kv ${g.kv}`);
  if (g.outbound) out.push(`outbound [${g.outbound.join(", ")}]`);
  if (g.secrets) out.push(`secrets [${g.secrets.join(", ")}]`);
  if (g.metrics) out.push("metrics");
  return out.length ? out.join(", ") : "none";
}

function entry(e, i) {
  return h("li", { class: "entry" },
    h("h3", {}, `${i + 1}. ${e.plugin}`),
    dl([
      ["Instances", e.instances],
      ["On error", e.on_error],
      ["Grants", grants(e.grants)],
    ]),
    h("details", {}, h("summary", {}, `Config of ${e.plugin}`),
      h("pre", {}, JSON.stringify(e.config, null, 2))));
}

export async function routes() {
  const { routes } = await call("/routes");
  return [
    h("h1", {}, "Routes"),
    h("p", {}, `${routes.length} routes, in the order requests are matched.`),
    routes.map((r) => h("section", { class: "card route", "aria-labelledby": `route-${r.name}` },
      h("h2", { id: `route-${r.name}` }, r.name),
      dl([
        ["Match", matchText(r.match)],
        ["Rewrite", r.rewrite ? (r.rewrite.prefix != null ? `prefix → ${r.rewrite.prefix}` : `path → ${r.rewrite.path}`) : "none"],
        ["Upstream", r.upstream ? code(r.upstream) : "none (a plugin answers)"],
        ["Listeners", r.listeners ? r.listeners.join(", ") : "all"],
      ]),
      r.chain.length
        ? h("ol", { class: "chain", "aria-label": `Chain of ${r.name}` }, r.chain.map(entry))
        : h("p", {}, "No plugins."))),
  ];
}
