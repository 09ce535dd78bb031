// Recent audit records (what plugins wrote: policy decisions, guardrail hits, LLM usage),
// filterable by route, plugin and principal.

import { call } from "../api.js";
import { h, table } from "../dom.js";

function field(id, label, onInput) {
  return h("p", { class: "field" }, h("label", { for: id }, label),
    h("input", { id, type: "search", oninput: onInput, autocomplete: "off" }));
}

function summary(record) {
  const r = { ...record };
  for (const k of ["principal", "event"]) delete r[k];
  return Object.entries(r).filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ");
}

export async function audit() {
  const { records, kept } = await call("/audit?limit=500");
  const out = h("div", {});
  const filters = { route: "", plugin: "", principal: "" };
  const show = () => {
    const match = (v, f) => !f || String(v ?? "").toLowerCase().includes(f.toLowerCase());
    const rows = records.filter((x) => match(x.route, filters.route) && match(x.plugin, filters.plugin)
      && match(x.record?.principal, filters.principal));
    out.replaceChildren(
      h("p", { role: "status", id: "audit-count" }, `${rows.length} of ${records.length} records`),
      table("Audit records, newest first", ["Time", "Route", "Plugin", "Principal", "Event", "Record"],
        rows.map((x) => [new Date(x.ts_ms).toLocaleTimeString(), x.route, x.plugin, x.record?.principal ?? "—",
          x.record?.event ?? "—", summary(x.record || {})]), { id: "audit-table" }));
  };
  const on = (k) => (ev) => { filters[k] = ev.target.value; show(); };
  show();
  return [
    h("h1", {}, "Audit"),
    h("p", {}, `The last ${kept} records plugins wrote are kept in memory (the audit log file has them all).`),
    h("form", { class: "filters", role: "search", onsubmit: (e) => e.preventDefault() },
      field("filter-route", "Route", on("route")),
      field("filter-plugin", "Plugin", on("plugin")),
      field("filter-principal", "Principal", on("principal"))),
    out,
  ];
}
