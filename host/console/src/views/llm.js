// LLM: usage per principal and model, and what remains of each principal's token budget, from
// the usage records `llm-gateway` writes (the most recent kept in memory).

import { call } from "../api.js";
import { h, table } from "../dom.js";

export async function llm() {
  const { records, kept } = await call(`/audit?limit=1000`);
  const usage = new Map();
  const budgets = new Map();
  // Oldest first, so the last record of a principal carries its latest budget.
  for (const x of [...records].reverse()) {
    const r = x.record || {};
    if (r.event !== "llm.request") continue;
    const k = `${r.principal}\u0000${r.model}`;
    const u = usage.get(k) || { principal: r.principal, model: r.model, requests: 0, input: 0, output: 0, cost: 0 };
    u.requests += 1;
    u.input += r.input_tokens || 0;
    u.output += r.output_tokens || 0;
    u.cost += r.cost_usd || 0;
    usage.set(k, u);
    if (r.budget) budgets.set(r.principal, r.budget);
  }
  const rows = [...usage.values()].sort((a, b) => (a.principal + a.model).localeCompare(b.principal + b.model));
  return [
    h("h1", {}, "LLM usage"),
    h("p", {}, `From the last ${kept} audit records kept in memory.`),
    table("Usage by principal and model", ["Principal", "Model", "Requests", "Input tokens", "Output tokens", "Cost (USD)"],
      rows.map((u) => [u.principal, u.model, String(u.requests), String(u.input), String(u.output), u.cost.toFixed(4)]),
      { id: "llm-usage" }),
    table("Token budgets", ["Principal", "Used", "Total budget", "Remaining", "Per minute"],
      [...budgets].sort().map(([p, b]) => [p, String(b.used_tokens ?? "—"), String(b.total_tokens ?? "none"),
        b.total_tokens != null && b.used_tokens != null ? String(Math.max(0, b.total_tokens - b.used_tokens)) : "—",
        String(b.tokens_per_minute ?? "none")]),
      { id: "llm-budgets" }),
  ];
}
