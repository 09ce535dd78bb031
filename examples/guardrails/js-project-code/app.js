// `project-code`: a custom guardrail in JavaScript. Replaces internal project code names
// (`PRJ-` and four upper-case letters) in the request body with `[project]`, lets the request
// go on and writes an audit record; meant to run after the built-in `guardrails` plugin. See
// README.md. Build with `weir plugin build .`, smoke-test with `weir plugin test .`.

import { plugin, request, context, log, buffered, CONTINUE } from './weir.js';

// The name the audit record gives this detector, and the plugin's (`name` in weir-plugin.toml).
const DETECTOR = 'project-code';
const PLUGIN = 'project-code';
const REPLACEMENT = '[project]';
// Word-bounded, so `PRJ-ABCDE` (five letters) is not a code. Global: `replace` takes them all.
const CODE = /\bPRJ-[A-Z]{4}\b/g;
// The chain buffers request bodies up to the largest limit any of its plugins declares, before
// the first plugin runs; a larger body is answered 413. 1 MiB holds any chat prompt of text.
const MAX_BODY = 1024 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** `text` with every code replaced, and how many there were. */
function redact(text) {
  let count = 0;
  const out = text.replace(CODE, () => {
    count += 1;
    return REPLACEMENT;
  });
  return [out, count];
}

/**
 * Codes that JSON escapes hide from a pass over the text (`PRJ-\u0041BCD` is `PRJ-ABCD` once
 * decoded). If the decoded body still holds some, it is re-encoded from the decoded value with
 * them replaced: whitespace is normalised then (and integers beyond 2^53 round, as JavaScript
 * numbers do), which is why the usual case keeps the client's bytes. Returns undefined when
 * there are none, or the body is not JSON.
 */
function redactEscaped(text) {
  let count = 0;
  const fix = (s) => {
    const [out, n] = redact(s);
    count += n;
    return out;
  };
  let value;
  try {
    // The reviver sees every value bottom-up, so no recursion of ours runs into a deep body.
    value = JSON.parse(text, (_key, v) => {
      if (typeof v === 'string') return fix(v);
      if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
      const entries = Object.entries(v);
      const renamed = entries.map(([k, x]) => [fix(k), x]);
      // fromEntries defines own properties, so even a `__proto__` key stays a plain key.
      return renamed.some(([k], i) => k !== entries[i][0]) ? Object.fromEntries(renamed) : v;
    });
  } catch {
    return undefined;
  }
  return count > 0 ? { text: JSON.stringify(value), count } : undefined;
}

export const { init, onRequest, onResponse, onBodyChunk, onBodyEnd } = plugin({
  requestBody: buffered(MAX_BODY),

  // Nothing to configure; refusing any key makes a misplaced config fail `weir check`.
  configure(config) {
    const [key] = Object.keys(config);
    if (key !== undefined) throw new Error(`unknown config key "${key}"`);
  },

  onRequest() {
    const body = request.body();
    if (body === undefined || body.length === 0) return CONTINUE;
    // The literal codes first, on the text: everything else reaches the upstream byte for byte.
    // (Bytes that are not UTF-8 become U+FFFD, but only in a body that had a code to replace.)
    let [text, count] = redact(decoder.decode(body));
    const hidden = redactEscaped(text);
    if (hidden !== undefined) {
      text = hidden.text;
      count += hidden.count;
    }
    if (count === 0) return CONTINUE;
    request.setBody(encoder.encode(text));
    // `<name>-audit {json}` is an audit record: the gateway writes it to the audit log too. It
    // says how many codes, never which.
    const record = {
      detector: DETECTOR,
      action: 'redact',
      count,
      direction: 'request',
      plugin: PLUGIN,
      principal: context.principal() ?? null,
    };
    log.info(`guardrail-audit ${JSON.stringify(record)}`);
    return CONTINUE;
  },
});
