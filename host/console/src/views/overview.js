// Overview: the active generation, the last reload's outcome (every error as the gateway wrote
// it: file:line:col, with the route and plugin it names), config and plugin digests.

import { call } from "../api.js";
import { h, dl, code, when, table, status } from "../dom.js";

async function reload(out) {
  if (!confirm("Reload the configuration from its file now?")) return;
  out.replaceChildren(status("Reloading…"));
  try {
    const r = await call("/reload", { method: "POST" });
    out.replaceChildren(status(`Reloaded: generation ${r.generation} is active.`));
  } catch (e) {
    const errors = e.body?.errors || [e.message];
    out.replaceChildren(status("The reload failed; the previous configuration keeps serving.", "alert"),
      h("ul", { class: "errors" }, errors.map((x) => h("li", {}, code(x)))));
  }
}

export async function overview() {
  const c = await call("/config");
  const result = h("div", { id: "reload-result" });
  const last = c.last_reload_error;
  return [
    h("h1", {}, "Overview"),
    dl([
      ["Active generation", String(c.generation)],
      ["Activated", when(c.activated_at)],
      ["Reloads", `${c.reloads} (${c.reload_failures} failed)`],
      ["Config file", code(c.config.path)],
      ["Config digest", code(c.config.digest)],
    ]),
    h("section", { "aria-labelledby": "last-reload" },
      h("h2", { id: "last-reload" }, "Last reload"),
      last
        ? [status(`The reload at ${when(last.at)} failed; generation ${c.generation} keeps serving.`, "alert"),
           h("ul", { class: "errors", id: "reload-errors" }, last.errors.map((x) => h("li", {}, code(x))))]
        : h("p", {}, "No reload has failed since the gateway started."),
      h("button", { type: "button", id: "reload", onclick: () => reload(result) }, "Reload configuration"),
      result),
    table("Plugins loaded", ["Plugin", "Source", "Digest"],
      c.plugins.map((p) => [p.name, code(p.path), code(p.digest)])),
  ];
}
