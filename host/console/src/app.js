// The Weir console: a sign-in form for the admin token, then one view per hash route. Every
// view reads the admin API with the token; the page itself holds no data.

import { call, token, setToken, Refused } from "./api.js";
import { h, status } from "./dom.js";
import { overview } from "./views/overview.js";
import { routes } from "./views/routes.js";
import { plugins } from "./views/plugins.js";
import { upstreams } from "./views/upstreams.js";
import { traffic } from "./views/traffic.js";
import { audit } from "./views/audit.js";
import { mcp } from "./views/mcp.js";
import { llm } from "./views/llm.js";

const VIEWS = [
  ["overview", "Overview", overview],
  ["routes", "Routes", routes],
  ["plugins", "Plugins", plugins],
  ["upstreams", "Upstreams", upstreams],
  ["traffic", "Traffic", traffic],
  ["mcp", "MCP", mcp],
  ["llm", "LLM", llm],
  ["audit", "Audit", audit],
];

const main = () => document.getElementById("main");
let running = new AbortController();

function signIn(message) {
  setToken(null);
  document.getElementById("nav").replaceChildren();
  document.getElementById("signout").hidden = true;
  const input = h("input", { id: "token", type: "password", autocomplete: "current-password", required: true });
  const form = h("form", { class: "card signin", onsubmit: async (ev) => {
    ev.preventDefault();
    setToken(input.value);
    try {
      await call("/config");
      show();
    } catch (e) {
      signIn(e instanceof Refused ? e.message : `Sign-in failed: ${e.message}`);
    }
  } },
  h("h1", {}, "Sign in"),
  h("p", {}, "The console reads the admin API with the gateway's admin token ([admin] token)."),
  h("label", { for: "token" }, "Admin token"), input,
  h("button", { type: "submit" }, "Sign in"),
  message ? status(message, "alert") : null);
  main().replaceChildren(form);
  input.focus();
}

function nav(current) {
  document.getElementById("nav").replaceChildren(h("ul", {}, VIEWS.map(([id, label]) =>
    h("li", {}, h("a", { href: `#/${id}`, "aria-current": id === current ? "page" : null }, label)))));
  document.getElementById("signout").hidden = false;
}

async function show() {
  if (!token()) return signIn();
  running.abort();
  running = new AbortController();
  const id = location.hash.replace(/^#\//, "") || "overview";
  const view = VIEWS.find(([v]) => v === id) || VIEWS[0];
  nav(view[0]);
  document.title = `${view[1]} · Weir console`;
  try {
    const content = await view[2](running.signal);
    main().replaceChildren(h("div", { class: "view", id: `view-${view[0]}` }, content));
  } catch (e) {
    if (e instanceof Refused) return signIn(e.message);
    main().replaceChildren(status(`Could not load ${view[1]}: ${e.message}`, "alert"));
  }
}

document.getElementById("signout").addEventListener("click", () => { running.abort(); signIn(); });
window.addEventListener("hashchange", () => { show(); main().focus(); });
window.addEventListener("unhandledrejection", (ev) => {
  if (ev.reason instanceof Refused) signIn(ev.reason.message);
});
show();
