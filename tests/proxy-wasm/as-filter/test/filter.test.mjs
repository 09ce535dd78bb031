// Drives build/filter.wasm through a minimal proxy-wasm 0.2.x host written here (in the spirit of
// Envoy's: root context id 1, HTTP call responses delivered to the root context), so the fixture
// can be checked without the Rust host. Run: npm run build && npm test
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

const wasm = new WebAssembly.Module(readFileSync(process.env.FILTER_WASM ?? new URL("../build/filter.wasm", import.meta.url)));
const enc = new TextEncoder();
const dec = new TextDecoder();
const OK = 0, NOT_FOUND = 1, CAS_MISMATCH = 8, UNIMPLEMENTED = 12;

function encodePairs(pairs) {
  const parts = pairs.map(([k, v]) => [enc.encode(k), enc.encode(v)]);
  let size = 4 + 8 * parts.length;
  for (const [k, v] of parts) size += k.length + v.length + 2;
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, parts.length, true);
  let at = 4;
  for (const [k, v] of parts) { dv.setUint32(at, k.length, true); dv.setUint32(at + 4, v.length, true); at += 8; }
  for (const [k, v] of parts) { out.set(k, at); at += k.length + 1; out.set(v, at); at += v.length + 1; }
  return out;
}

function decodePairs(bytes) {
  if (bytes.length === 0) return [];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = dv.getUint32(0, true);
  const sizes = [];
  for (let i = 0; i < n; i++) sizes.push([dv.getUint32(4 + 8 * i, true), dv.getUint32(8 + 8 * i, true)]);
  let at = 4 + 8 * n;
  return sizes.map(([k, v]) => {
    const key = dec.decode(bytes.slice(at, at + k)); at += k + 1;
    const value = dec.decode(bytes.slice(at, at + v)); at += v + 1;
    return [key, value];
  });
}

class Host {
  constructor({ pluginConfig, rootId = "", shared = new Map() }) {
    this.pluginConfig = enc.encode(pluginConfig);
    this.rootId = rootId;
    this.shared = shared; // key -> { value: Uint8Array, cas }
    this.logs = [];
    this.metrics = []; // { name, type, value }
    this.maps = { 0: [], 2: [], 6: [] };
    this.buffers = {};
    this.calls = [];
    this.local = null;
    this.continued = [];
    this.effective = [];
    this.tickMs = 0;
    this.casFailures = 0; // how many sets to refuse with CasMismatch, to exercise the retry
    const imports = { env: {}, wasi_unstable: { proc_exit: (code) => { throw new Error(`proc_exit(${code}): ${this.logs.at(-1)?.[1]}`); } } };
    for (const i of WebAssembly.Module.imports(wasm)) {
      if (i.module === "env") imports.env[i.name] = () => UNIMPLEMENTED;
    }
    Object.assign(imports.env, this.calls_());
    this.instance = new WebAssembly.Instance(wasm, imports);
    this.x = this.instance.exports;
  }

  mem() { return new Uint8Array(this.x.memory.buffer); }
  view() { return new DataView(this.x.memory.buffer); }
  read(p, n) { return this.mem().slice(p, p + n); }
  str(p, n) { return dec.decode(this.read(p, n)); }
  give(bytes, pp, np) {
    const p = this.x.malloc(bytes.length);
    this.mem().set(bytes, p);
    this.view().setUint32(pp, p, true);
    this.view().setUint32(np, bytes.length, true);
    return OK;
  }

  calls_() {
    const h = this;
    const header = (map, kp, kn) => [h.maps[map], h.str(kp, kn).toLowerCase()];
    return {
      proxy_log(level, p, n) { h.logs.push([level, h.str(p, n)]); return OK; },
      proxy_get_property(pp, pn, vp, vn) {
        const path = h.str(pp, pn);
        if (path === "plugin_root_id") return h.give(enc.encode(h.rootId), vp, vn);
        return NOT_FOUND;
      },
      proxy_get_buffer_bytes(t, start, len, pp, np) {
        const all = t === 7 ? h.pluginConfig : h.buffers[t];
        if (!all) return NOT_FOUND;
        return h.give(all.slice(start, start + len), pp, np);
      },
      proxy_set_buffer_bytes(t, start, len, p, n) {
        const old = h.buffers[t];
        if (!old) return NOT_FOUND;
        const data = h.read(p, n);
        const out = new Uint8Array(old.length - Math.min(len, old.length - start) + n);
        out.set(old.slice(0, start)); out.set(data, start); out.set(old.slice(start + len), start + n);
        h.buffers[t] = out;
        return OK;
      },
      proxy_get_header_map_value(map, kp, kn, vp, vn) {
        const [m, k] = header(map, kp, kn);
        const hit = m.find(([name]) => name === k);
        return hit ? h.give(enc.encode(hit[1]), vp, vn) : NOT_FOUND;
      },
      proxy_add_header_map_value(map, kp, kn, vp, vn) { const [m, k] = header(map, kp, kn); m.push([k, h.str(vp, vn)]); return OK; },
      proxy_replace_header_map_value(map, kp, kn, vp, vn) {
        const [m, k] = header(map, kp, kn);
        h.maps[map] = m.filter(([name]) => name !== k).concat([[k, h.str(vp, vn)]]);
        return OK;
      },
      proxy_remove_header_map_value(map, kp, kn) { const [m, k] = header(map, kp, kn); h.maps[map] = m.filter(([name]) => name !== k); return OK; },
      proxy_get_shared_data(kp, kn, vp, vn, cp) {
        const e = h.shared.get(h.str(kp, kn));
        if (!e) return NOT_FOUND;
        h.view().setUint32(cp, e.cas, true);
        return h.give(e.value, vp, vn);
      },
      proxy_set_shared_data(kp, kn, vp, vn, cas) {
        const key = h.str(kp, kn);
        const e = h.shared.get(key);
        if (h.casFailures > 0) { h.casFailures--; return CAS_MISMATCH; }
        if (cas !== 0 && e && e.cas !== cas) return CAS_MISMATCH;
        h.shared.set(key, { value: h.read(vp, vn), cas: (e?.cas ?? 0) + 1 });
        return OK;
      },
      proxy_define_metric(type, np, nn, idp) {
        h.metrics.push({ name: h.str(np, nn), type, value: 0n });
        h.view().setUint32(idp, h.metrics.length, true);
        return OK;
      },
      proxy_increment_metric(id, offset) { h.metrics[id - 1].value += offset; return OK; },
      proxy_set_tick_period_milliseconds(ms) { h.tickMs = ms; return OK; },
      proxy_set_effective_context(id) { h.effective.push(id); return OK; },
      proxy_continue_stream(t) { h.continued.push(t); return OK; },
      proxy_send_local_response(status, dp, dn, bp, bn, hp, hn, grpc) {
        h.local = { status, details: h.str(dp, dn), body: h.str(bp, bn), headers: decodePairs(h.read(hp, hn)), grpc };
        return OK;
      },
      proxy_http_call(up, un, hp, hn, bp, bn, tp, tn, timeout, tokp) {
        const token = h.calls.length + 1;
        h.calls.push({ cluster: h.str(up, un), headers: decodePairs(h.read(hp, hn)), body: h.str(bp, bn), trailers: decodePairs(h.read(tp, tn)), timeout });
        h.view().setUint32(tokp, token, true);
        return OK;
      },
    };
  }

  start() {
    this.x.proxy_on_context_create(1, 0);
    if (this.x.proxy_on_vm_start(1, 0) === 0) return false;
    return this.x.proxy_on_configure(1, this.pluginConfig.length) !== 0;
  }

  counter(key) { const e = this.shared.get(key); return e ? dec.decode(e.value) : undefined; }
  header(map, name) { return this.maps[map].find(([k]) => k === name)?.[1]; }
}

const config = (o) => JSON.stringify(o);

test("refuses configurations that are not valid", () => {
  for (const bad of ["", "not json", "{}", '{"header_value": 1}', '{"header_value": "a", "nope": "b"}', '{"header_value": "a"', '["a"]']) {
    assert.equal(new Host({ pluginConfig: bad }).start(), false, `accepted ${JSON.stringify(bad)}`);
  }
  assert.equal(new Host({ pluginConfig: '{ "header_value" : "a\\"b\\u0041" }' }).start(), true);
});

test("root id: both the default \"\" and \"as_filter\" are registered", () => {
  for (const rootId of ["", "as_filter"]) assert.equal(new Host({ pluginConfig: config({ header_value: "v" }), rootId }).start(), true);
  assert.throws(() => new Host({ pluginConfig: config({ header_value: "v" }), rootId: "other" }).start(), /proc_exit/);
});

test("header edits, shared counter with CAS, metric, tick", () => {
  const h = new Host({ pluginConfig: config({ header_value: "hello" }) });
  assert.equal(h.start(), true);
  assert.equal(h.tickMs, 100);
  for (let i = 1; i <= 3; i++) {
    if (i === 3) h.casFailures = 2;
    h.maps[0] = [[":path", "/"], ["x-remove-me", "1"]];
    h.x.proxy_on_context_create(1 + i, 1);
    assert.equal(h.x.proxy_on_request_headers(1 + i, 2, 1), 0);
    assert.equal(h.header(0, "x-as-filter"), "hello");
    assert.equal(h.header(0, "x-remove-me"), undefined);
    assert.equal(h.header(0, "x-as-count"), String(i));
    h.maps[2] = [[":status", "200"]];
    assert.equal(h.x.proxy_on_response_headers(1 + i, 1, 0), 0);
    assert.equal(h.header(2, "x-as-response"), "yes");
    h.x.proxy_on_done(1 + i); h.x.proxy_on_log(1 + i); h.x.proxy_on_delete(1 + i);
  }
  assert.deepEqual(h.metrics.map((m) => [m.name, m.type, m.value]), [["as_filter_requests", 0, 3n]]);
  h.x.proxy_on_tick(1); h.x.proxy_on_tick(1);
  assert.equal(h.counter("as-ticks"), "2");
  assert.equal(h.counter("as-requests"), "3");
});

test("auth through http_call: pause, then resume or deny", () => {
  const h = new Host({ pluginConfig: config({ header_value: "v", auth_cluster: "auth" }) });
  assert.equal(h.start(), true);
  h.maps[0] = [[":path", "/"], ["x-token", "t0k"]];
  h.x.proxy_on_context_create(2, 1);
  assert.equal(h.x.proxy_on_request_headers(2, 2, 1), 1); // StopIteration
  assert.deepEqual(h.calls[0], {
    cluster: "auth", timeout: 5000, body: "", trailers: [],
    headers: [[":method", "GET"], [":path", "/check"], [":authority", "auth"], ["x-token", "t0k"]],
  });
  h.maps[6] = [[":status", "200"]];
  h.buffers[4] = enc.encode("alice");
  h.x.proxy_on_http_call_response(1, 1, 1, 5, 0);
  assert.deepEqual(h.effective, [2]);
  assert.equal(h.header(0, "x-auth-user"), "alice");
  assert.deepEqual(h.continued, [0]);
  assert.equal(h.local, null);

  h.maps[0] = [[":path", "/"]];
  h.x.proxy_on_context_create(3, 1);
  assert.equal(h.x.proxy_on_request_headers(3, 1, 1), 1);
  assert.equal(h.calls[1].headers[3][1], "");
  h.maps[6] = [[":status", "401"]];
  h.buffers[4] = new Uint8Array();
  h.x.proxy_on_http_call_response(1, 2, 1, 0, 0);
  assert.deepEqual(h.local, { status: 403, details: "", body: "denied by as-filter", headers: [], grpc: 2 });
  assert.deepEqual(h.continued, [0]);
});

test("bodies: forbidden request body, redacted response body", () => {
  const h = new Host({ pluginConfig: config({ header_value: "v", redact_word: "secret" }) });
  assert.equal(h.start(), true);
  h.x.proxy_on_context_create(2, 1);
  h.buffers[0] = enc.encode("this is forb");
  assert.equal(h.x.proxy_on_request_body(2, h.buffers[0].length, 0), 1); // buffer
  h.buffers[0] = enc.encode("this is forbidden");
  assert.equal(h.x.proxy_on_request_body(2, h.buffers[0].length, 1), 1);
  assert.equal(h.local.status, 400);
  assert.equal(h.local.body, "forbidden body");

  h.local = null;
  h.x.proxy_on_context_create(3, 1);
  h.buffers[0] = enc.encode("fine");
  assert.equal(h.x.proxy_on_request_body(3, 4, 1), 0);
  h.maps[2] = [[":status", "200"], ["content-length", "27"]];
  assert.equal(h.x.proxy_on_response_headers(3, 2, 0), 0);
  assert.equal(h.header(2, "content-length"), undefined);
  h.buffers[1] = enc.encode("a secret, ");
  assert.equal(h.x.proxy_on_response_body(3, h.buffers[1].length, 0), 1);
  h.buffers[1] = enc.encode("a secret, another secret!");
  assert.equal(h.x.proxy_on_response_body(3, h.buffers[1].length, 1), 0);
  assert.equal(dec.decode(h.buffers[1]), "a ****, another ****!");
  assert.equal(h.local, null);
});
