// MCP: an MCP route's federated catalog (tools, prompts, resources) per server, as the
// principal behind some credentials sees it after every plugin of the route (`mcp-policy`
// included): the gateway asks its own route with those credentials (`POST /mcp/catalog`).

import { call } from "../api.js";
import { h, table, status, code } from "../dom.js";

/** The server an item belongs to: `mcp-gateway` prefixes names with `server<separator>` and
 * resource URIs with `server+`. */
function serverOf(name, servers, separator, uri) {
  for (const s of servers) {
    if (uri ? name.startsWith(`${s}+`) : name.startsWith(`${s}${separator}`)) return s;
  }
  return "other";
}

function render(result, gw, out) {
  const servers = Object.keys(gw.config.servers || {});
  const sep = gw.config.separator ?? "_";
  const groups = new Map([...servers, "other"].map((s) => [s, { tools: [], prompts: [], resources: [] }]));
  for (const t of result.tools || []) groups.get(serverOf(t.name, servers, sep)).tools.push(t);
  for (const p of result.prompts || []) groups.get(serverOf(p.name, servers, sep)).prompts.push(p);
  for (const r of result.resources || []) groups.get(serverOf(r.uri, servers, sep, true)).resources.push(r);
  const errors = Object.entries(result.errors || {});
  out.replaceChildren(
    h("p", { role: "status", id: "catalog-count" },
      `${(result.tools || []).length} tools, ${(result.prompts || []).length} prompts, ${(result.resources || []).length} resources`),
    ...(errors.length ? [h("ul", { class: "errors" }, errors.map(([k, e]) => h("li", {}, `${k}: `, code(e))))] : []),
    ...[...groups].filter(([s, g]) => s !== "other" || g.tools.length + g.prompts.length + g.resources.length)
      .map(([s, g]) => h("section", { class: "card", "aria-labelledby": `server-${s}` },
        h("h2", { id: `server-${s}` }, `Server ${s}`),
        table(`Tools of ${s}`, ["Tool", "Description"], g.tools.map((t) => [t.name, t.description ?? ""]), { class: "tools" }),
        table(`Prompts of ${s}`, ["Prompt", "Description"], g.prompts.map((p) => [p.name, p.description ?? ""])),
        table(`Resources of ${s}`, ["URI", "Name"], g.resources.map((r) => [r.uri, r.name ?? ""])))));
}

export async function mcp() {
  const { routes } = await call("/routes");
  const mcpRoutes = routes.filter((r) => r.chain.some((e) => e.plugin === "mcp-gateway"));
  if (!mcpRoutes.length) return [h("h1", {}, "MCP"), h("p", {}, "No route runs mcp-gateway.")];
  const out = h("div", { id: "catalog" });
  const route = h("select", { id: "mcp-route" }, mcpRoutes.map((r) => h("option", { value: r.name }, r.name)));
  const header = h("input", { id: "mcp-header", value: "x-api-key", autocomplete: "off" });
  const secret = h("input", { id: "mcp-credential", type: "password", autocomplete: "off" });
  const submit = async (ev) => {
    ev.preventDefault();
    const r = mcpRoutes.find((x) => x.name === route.value);
    const gw = r.chain.find((e) => e.plugin === "mcp-gateway");
    out.replaceChildren(status("Asking the route…"));
    try {
      const headers = secret.value ? { [header.value]: secret.value } : {};
      const result = await call("/mcp/catalog", { method: "POST", body: JSON.stringify({ route: r.name, headers }) });
      render(result, gw, out);
    } catch (e) {
      out.replaceChildren(status(`The catalog could not be read: ${e.body?.error || e.message}`, "alert"));
    }
  };
  return [
    h("h1", {}, "MCP"),
    h("p", {}, "The catalog a principal sees, per server: the gateway asks its own route with the principal's credentials, so every plugin of the route (mcp-policy included) applies."),
    h("form", { class: "card", onsubmit: submit },
      h("label", { for: "mcp-route" }, "Route"), route,
      h("label", { for: "mcp-header" }, "Credential header"), header,
      h("label", { for: "mcp-credential" }, "Credential of the principal"), secret,
      h("p", {}, h("button", { type: "submit" }, "Show catalog"))),
    out,
  ];
}
