// Upstreams: endpoints and their state (health checks, outlier ejection).

import { call } from "../api.js";
import { h, table, code } from "../dom.js";

export async function upstreams() {
  const { upstreams } = await call("/upstreams");
  return [
    h("h1", {}, "Upstreams"),
    upstreams.map((u) => h("section", { class: "card", "aria-labelledby": `up-${u.name}` },
      h("h2", { id: `up-${u.name}` }, u.name),
      table(`Endpoints of ${u.name}`, ["Endpoint", "Weight", "State", "Consecutive failures", "In flight", "Ejections"],
        (u.endpoints || []).map((e) => [code(e.url), String(e.weight ?? "—"),
          h("span", { class: e.state === "healthy" ? "ok" : "bad" }, e.state ?? "—"),
          String(e.consecutive_failures ?? 0), String(e.in_flight ?? 0), String(e.ejections ?? 0)])))),
  ];
}
