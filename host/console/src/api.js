// The admin API, with the token the operator signed in with (kept for this tab only).

const KEY = "weir-admin-token";

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(t) {
  if (t) sessionStorage.setItem(KEY, t);
  else sessionStorage.removeItem(KEY);
}

/** Thrown for 401 and 429: the view goes back to the sign-in form with `message`. */
export class Refused extends Error {}

/** `fetch` against the admin API; JSON (or text for `/metrics`) or an Error with the answer. */
export async function call(path, { method = "GET", body, text = false } = {}) {
  const headers = {};
  const t = token();
  if (t) headers.authorization = `Bearer ${t}`;
  const r = await fetch(path, { method, body, headers, cache: "no-store" });
  if (r.status === 401) throw new Refused("The token was refused.");
  if (r.status === 429) throw new Refused("Too many failed attempts: wait a minute, then sign in again.");
  const out = text ? await r.text() : await r.json().catch(() => ({}));
  if (!r.ok) {
    const e = new Error(`HTTP ${r.status}`);
    e.status = r.status;
    e.body = out;
    throw e;
  }
  return out;
}
