// The gateway's `/metrics` (Prometheus text format) read in the browser: samples, rates between
// two scrapes, and quantiles from histogram buckets (interpolated within a bucket, as
// Prometheus' `histogram_quantile` does).

/** `[{name, labels, value}]` from the text format; comments and malformed lines skipped. */
export function parse(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    let l;
    while ((l = re.exec(m[3] || ""))) labels[l[1]] = l[2].replace(/\\(.)/g, "$1");
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

/** Sums `value` of the samples named `name` by the label `by` (a function of the labels). */
export function sum(samples, name, by) {
  const out = new Map();
  for (const s of samples) {
    if (s.name !== name) continue;
    const k = by(s.labels);
    if (k === null) continue;
    out.set(k, (out.get(k) || 0) + s.value);
  }
  return out;
}

/** Per-second rates between two sums taken `seconds` apart (a counter reset reads as 0). */
export function rates(now, before, seconds) {
  const out = new Map();
  for (const [k, v] of now) {
    const d = v - (before?.get(k) ?? v);
    out.set(k, seconds > 0 && d > 0 ? d / seconds : 0);
  }
  return out;
}

/** Cumulative buckets (`le` → count) of histogram `name`, grouped by `by`. */
export function buckets(samples, name, by) {
  const out = new Map();
  for (const s of samples) {
    if (s.name !== `${name}_bucket`) continue;
    const k = by(s.labels);
    if (k === null) continue;
    const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    const b = out.get(k) || new Map();
    b.set(le, (b.get(le) || 0) + s.value);
    out.set(k, b);
  }
  return out;
}

/** The `q` quantile of cumulative buckets, in the buckets' unit; null without observations. */
export function quantile(q, cumulative) {
  const bs = [...cumulative.entries()].sort((a, b) => a[0] - b[0]);
  const total = bs.length ? bs[bs.length - 1][1] : 0;
  if (!total) return null;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, count] of bs) {
    if (count >= rank) {
      if (le === Infinity) return prevLe;
      const inBucket = count - prevCount;
      return inBucket ? prevLe + (le - prevLe) * ((rank - prevCount) / inBucket) : le;
    }
    prevLe = le;
    prevCount = count;
  }
  return prevLe;
}

/** Buckets observed between two scrapes (the later minus the earlier, per bucket). */
export function delta(now, before) {
  const out = new Map();
  for (const [k, b] of now) {
    const old = before?.get(k);
    const d = new Map();
    for (const [le, c] of b) d.set(le, Math.max(0, c - (old?.get(le) ?? 0)));
    out.set(k, d);
  }
  return out;
}
