// A line chart as inline SVG: no chart library for one series of 60 points.

const NS = "http://www.w3.org/2000/svg";

function el(tag, attrs) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

/** An SVG of `points` (numbers, oldest first), scaled to its maximum; `label` names it. */
export function lineChart(points, label) {
  const w = 600;
  const hgt = 160;
  const max = Math.max(1, ...points);
  const svg = el("svg", { viewBox: `0 0 ${w} ${hgt}`, role: "img", "aria-label": label, class: "chart",
    "data-points": points.length, "data-last": (points[points.length - 1] ?? 0).toFixed(2) });
  const title = el("title", {});
  title.textContent = label;
  svg.append(title);
  for (const f of [0.25, 0.5, 0.75]) {
    svg.append(el("line", { x1: 0, x2: w, y1: hgt * f, y2: hgt * f, class: "grid" }));
  }
  const step = points.length > 1 ? w / (points.length - 1) : w;
  const xy = points.map((p, i) => `${(i * step).toFixed(1)},${(hgt - (p / max) * (hgt - 8) - 4).toFixed(1)}`);
  if (xy.length) svg.append(el("polyline", { points: xy.join(" "), class: "series" }));
  const top = el("text", { x: 4, y: 14, class: "axis" });
  top.textContent = `${max.toFixed(max < 10 ? 1 : 0)}/s`;
  svg.append(top);
  return svg;
}
