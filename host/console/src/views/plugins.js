// Plugins: source and digest, instance policy, instantiations, failures and health; upload a
// new build (validated with every route that uses it before it replaces the running one).

import { call } from "../api.js";
import { h, table, code, status } from "../dom.js";

async function upload(name, input, out) {
  const file = input.files?.[0];
  if (!file) {
    out.replaceChildren(status("Choose a .wasm file first.", "alert"));
    return;
  }
  if (!confirm(`Replace plugin ${name} with ${file.name} on every route that uses it?`)) return;
  out.replaceChildren(status("Uploading and validating…"));
  try {
    const r = await call(`/plugins/${encodeURIComponent(name)}`, { method: "PUT", body: file });
    out.replaceChildren(status(`Active: ${name} ${r.digest} (generation ${r.generation}).`));
  } catch (e) {
    const errors = e.body?.errors || [e.body?.error || e.message];
    out.replaceChildren(status(`Refused; the running ${name} keeps serving.`, "alert"),
      h("ul", { class: "errors" }, errors.map((x) => h("li", {}, code(x)))));
  }
}

function uploader(p) {
  const id = `upload-${p.name}`;
  const out = h("div", { class: "upload-result", id: `${id}-result` });
  const input = h("input", { type: "file", id, accept: ".wasm,application/wasm" });
  return h("form", { class: "upload", onsubmit: (ev) => { ev.preventDefault(); upload(p.name, input, out); } },
    h("label", { for: id }, `New build of ${p.name}`), input,
    h("button", { type: "submit" }, `Upload ${p.name}`), out);
}

function lastFailure(p) {
  const last = p.recent_failure_reasons?.[0];
  if (!last) return "—";
  return h("details", {}, h("summary", {}, `${new Date(last.at * 1000).toLocaleTimeString()} on ${last.route}`),
    h("ul", {}, p.recent_failure_reasons.map((f) => h("li", {}, `${f.route}: `, code(f.reason)))));
}

export async function plugins() {
  const [{ plugins }, described] = await Promise.all([call("/plugins"), call("/routes")]);
  const sources = described.plugins || {};
  const signature = (name) => (sources[name]?.signature_key ? `verified (key ${sources[name].signature_key})` : "not required");
  return [
    h("h1", {}, "Plugins"),
    table("Plugins", ["Plugin", "Source", "Digest", "Signature", "Instances", "Routes", "Instantiations", "Failures", "Recent failures", "Last failures", "Health"],
      plugins.map((p) => [p.name, code(sources[p.name]?.source ?? p.path), code(p.digest.slice(0, 19) + "…"), signature(p.name),
        p.instances, p.routes.join(", ") || "—", String(p.instantiations), String(p.failures), String(p.recent_failures),
        lastFailure(p), h("span", { class: p.healthy ? "ok" : "bad" }, p.healthy ? "healthy" : "failing")]),
      { id: "plugins-table" }),
    h("h2", {}, "Upload a new build"),
    h("p", {}, "The build is checked with every route that uses the plugin; if any refuses it, nothing changes."),
    plugins.map(uploader),
  ];
}
