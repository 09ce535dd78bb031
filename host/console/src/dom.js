// A few helpers to build DOM nodes: no template strings, so nothing from the gateway is ever
// parsed as HTML.

/** `h("a", {href: "#"}, "text", child)`: attributes starting with `on` are listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** A table with a caption, header cells with `scope`, in a scrolling wrapper (narrow screens). */
export function table(caption, head, rows, attrs = {}) {
  return h("div", { class: "scroll", tabindex: 0, role: "region", "aria-label": caption },
    h("table", attrs,
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c, i) =>
        i === 0 ? h("th", { scope: "row" }, c) : h("td", {}, c)))))));
}

/** A definition list from `[term, value]` pairs. */
export function dl(pairs) {
  return h("dl", { class: "facts" }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")]));
}

export function code(s) {
  return h("code", {}, s);
}

export function when(seconds) {
  if (!seconds) return "—";
  return new Date(seconds * 1000).toLocaleString();
}

/** A status line that screen readers announce. */
export function status(text, kind = "status") {
  return h("p", { role: kind, class: kind === "alert" ? "alert" : "note" }, text);
}
