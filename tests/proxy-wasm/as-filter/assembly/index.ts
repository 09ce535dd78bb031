// A proxy-wasm HTTP filter written against the AssemblyScript SDK (@solo-io/proxy-runtime 0.1.8,
// unchanged) the way its README and examples/auth show: the fixture for Weir's proxy-wasm host.
//
// Configuration (the plugin configuration bytes): a flat JSON object of strings, e.g.
//   {"header_value": "hello", "auth_cluster": "auth", "redact_word": "secret"}
// header_value is required; auth_cluster and redact_word are optional (absent or "" = off).
// Anything else (not JSON, non-string values, unknown keys, no header_value) is refused.

// Required: the proxy_* callbacks, malloc/free and proxy_abi_version_0_2_0 come from here.
export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, log, LogLevelValues, stream_context,
  FilterHeadersStatusValues, FilterDataStatusValues, GrpcStatusValues, WasmResultValues,
  HeaderPair, Headers, Counter, send_local_response,
} from "@solo-io/proxy-runtime";
// Same SDK, the parts its index does not re-export.
import {
  get_buffer_bytes, set_tick_period_milliseconds, BufferTypeValues, Reference,
} from "@solo-io/proxy-runtime/runtime";
import * as abi from "@solo-io/proxy-runtime/imports";
import { free } from "@solo-io/proxy-runtime/malloc";

// The SDK declares no proxy_set_buffer_bytes (its proxy_set_buffer_status is bound to the
// import "proxy_get_buffer_status" by mistake, and unused), so the filter declares the ABI call.
// @ts-ignore: decorator
@external("env", "proxy_set_buffer_bytes")
declare function proxy_set_buffer_bytes(typ: i32, start: u32, length: u32, data: usize, size: usize): u32;

const TICK_MS: u32 = 100;
const CAS_TRIES = 16;

class Config {
  headerValue: string = "";
  authCluster: string = "";
  redactWord: string = "";
}

/////////////// Configuration: a tiny parser, as the SDK ships no JSON library (and AS 0.14 has
/////////////// no exceptions to recover from a throwing one).

class FlatJson {
  s: string;
  i: i32 = 0;
  ok: bool = true;

  constructor(s: string) { this.s = s; }

  peek(): i32 { return this.i < this.s.length ? this.s.charCodeAt(this.i) : -1; }

  skipSpace(): void {
    while (this.i < this.s.length) {
      const c = this.s.charCodeAt(this.i);
      if (c != 0x20 && c != 0x09 && c != 0x0a && c != 0x0d) break;
      this.i++;
    }
  }

  expect(c: i32): void {
    this.skipSpace();
    if (this.peek() != c) this.ok = false; else this.i++;
  }

  hex(): i32 {
    if (this.i + 4 > this.s.length) { this.ok = false; return 0; }
    let v = 0;
    for (let k = 0; k < 4; k++) {
      const c = this.s.charCodeAt(this.i++);
      let d = -1;
      if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if (c >= 0x61 && c <= 0x66) d = c - 0x61 + 10;
      else if (c >= 0x41 && c <= 0x46) d = c - 0x41 + 10;
      if (d < 0) { this.ok = false; return 0; }
      v = v * 16 + d;
    }
    return v;
  }

  str(): string {
    this.expect(0x22);
    let out = "";
    while (this.ok) {
      if (this.i >= this.s.length) { this.ok = false; break; }
      const c = this.s.charCodeAt(this.i++);
      if (c == 0x22) return out;
      if (c < 0x20) { this.ok = false; break; }
      if (c != 0x5c) { out += String.fromCharCode(c); continue; }
      if (this.i >= this.s.length) { this.ok = false; break; }
      const e = this.s.charCodeAt(this.i++);
      if (e == 0x22 || e == 0x5c || e == 0x2f) out += String.fromCharCode(e);
      else if (e == 0x62) out += "\b";
      else if (e == 0x66) out += "\f";
      else if (e == 0x6e) out += "\n";
      else if (e == 0x72) out += "\r";
      else if (e == 0x74) out += "\t";
      else if (e == 0x75) out += String.fromCharCode(this.hex());
      else this.ok = false;
    }
    return "";
  }
}

function parseConfig(text: string): Config | null {
  const p = new FlatJson(text);
  const config = new Config();
  let hasHeader = false;
  p.expect(0x7b); // {
  p.skipSpace();
  if (p.ok && p.peek() == 0x7d) { p.i++; } else {
    while (p.ok) {
      const key = p.str();
      p.expect(0x3a); // :
      p.skipSpace();
      const value = p.str();
      if (!p.ok) break;
      if (key == "header_value") { config.headerValue = value; hasHeader = true; }
      else if (key == "auth_cluster") config.authCluster = value;
      else if (key == "redact_word") config.redactWord = value;
      else { log(LogLevelValues.error, "as-filter: unknown configuration key " + key); return null; }
      p.skipSpace();
      if (p.peek() == 0x2c) { p.i++; continue; } // ,
      p.expect(0x7d); // }
      break;
    }
  }
  p.skipSpace();
  if (!p.ok || p.i != text.length || !hasHeader) return null;
  return config;
}

/////////////// Shared data

// The SDK's get_shared_data/set_shared_data wrappers in 0.1.8 pass wrong pointers and drop the
// CAS, so the counter uses the SDK's raw ABI declarations.
function takeHostBuffer(ptr: usize): ArrayBuffer {
  if (ptr == 0) return new ArrayBuffer(0);
  // The host allocated this with the SDK's malloc (retained once): adopt it, as the SDK does.
  const buffer = changetype<ArrayBuffer>(ptr);
  free(ptr);
  return buffer;
}

function parseCount(text: string): u64 {
  let n: u64 = 0;
  for (let k = 0; k < text.length; k++) {
    const c = text.charCodeAt(k);
    if (c < 0x30 || c > 0x39) return 0;
    n = n * 10 + <u64>(c - 0x30);
  }
  return n;
}

// Adds one to a decimal counter; retries while another instance wrote in between (CasMismatch).
// Returns the new value, or 0 if the host refused.
function incrementShared(key: string): u64 {
  const k = String.UTF8.encode(key);
  for (let attempt = 0; attempt < CAS_TRIES; attempt++) {
    const ptr = new Reference<usize>();
    const size = new Reference<usize>();
    const cas = new Reference<u32>();
    const got = abi.proxy_get_shared_data(changetype<usize>(k), k.byteLength, ptr.ptr(), size.ptr(), cas.ptr());
    let current: u64 = 0;
    let expected: u32 = 0;
    if (got == WasmResultValues.Ok) {
      current = parseCount(String.UTF8.decode(takeHostBuffer(ptr.data)));
      expected = cas.data;
    } else if (got != WasmResultValues.NotFound) {
      log(LogLevelValues.error, "as-filter: get_shared_data(" + key + ") = " + got.toString());
      return 0;
    }
    const next = current + 1;
    const v = String.UTF8.encode(next.toString());
    const set = abi.proxy_set_shared_data(changetype<usize>(k), k.byteLength, changetype<usize>(v), v.byteLength, expected);
    if (set == WasmResultValues.Ok) return next;
    if (set != WasmResultValues.CasMismatch) {
      log(LogLevelValues.error, "as-filter: set_shared_data(" + key + ") = " + set.toString());
      return 0;
    }
  }
  log(LogLevelValues.warn, "as-filter: " + key + " still contended after " + CAS_TRIES.toString() + " tries");
  return 0;
}

// The decimal counter under `key`, 0 when absent.
function readShared(key: string): u64 {
  const k = String.UTF8.encode(key);
  const ptr = new Reference<usize>();
  const size = new Reference<usize>();
  const cas = new Reference<u32>();
  const got = abi.proxy_get_shared_data(changetype<usize>(k), k.byteLength, ptr.ptr(), size.ptr(), cas.ptr());
  if (got != WasmResultValues.Ok) return 0;
  return parseCount(String.UTF8.decode(takeHostBuffer(ptr.data)));
}

/////////////// Contexts

class AsFilterRoot extends RootContext {
  config: Config = new Config();
  requests: Counter | null = null;

  createContext(context_id: u32): Context {
    return new AsFilter(context_id, this);
  }

  onConfigure(configuration_size: u32): bool {
    // Not super.onConfigure()/getConfiguration(): in 0.1.8 it passes configuration_size where
    // the size out-pointer belongs (the host writes 4 bytes at that address) and keeps a stale
    // size, so it reads "" whenever the previous host buffer was empty (fixed upstream after 0.1.8).
    const bytes = get_buffer_bytes(BufferTypeValues.PluginConfiguration, 0, configuration_size);
    const config = parseConfig(String.UTF8.decode(bytes));
    if (config === null) {
      log(LogLevelValues.error, "as-filter: refusing configuration (want a JSON object with header_value)");
      return false;
    }
    this.config = config;
    // Defined once per VM: on_configure runs again on reconfiguration.
    if (this.requests === null) this.requests = new Counter("as_filter_requests");
    set_tick_period_milliseconds(TICK_MS);
    log(LogLevelValues.info, "as-filter: configured, header_value=" + config.headerValue +
      ", auth_cluster=" + config.authCluster + ", redact_word=" + config.redactWord);
    return true;
  }

  onTick(): void {
    incrementShared("as-ticks");
  }
}

class AsFilter extends Context {
  root: AsFilterRoot;

  constructor(context_id: u32, root_context: AsFilterRoot) {
    super(context_id, root_context);
    this.root = root_context;
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    const config = this.root.config;
    stream_context.headers.request.remove("x-remove-me");
    stream_context.headers.request.add("x-as-filter", config.headerValue);
    const count = incrementShared("as-requests");
    if (count > 0) stream_context.headers.request.replace("x-as-count", count.toString());
    // What the root context's ticks counted so far.
    stream_context.headers.request.replace("x-as-ticks", readShared("as-ticks").toString());
    this.root.requests!.increment(1);
    log(LogLevelValues.info, "as-filter: request " + count.toString() + " in context " + this.context_id.toString());

    if (config.authCluster == "") return FilterHeadersStatusValues.Continue;

    const call: Headers = [
      new HeaderPair(String.UTF8.encode(":method"), String.UTF8.encode("GET")),
      new HeaderPair(String.UTF8.encode(":path"), String.UTF8.encode("/check")),
      new HeaderPair(String.UTF8.encode(":authority"), String.UTF8.encode("auth")),
      new HeaderPair(String.UTF8.encode("x-token"), String.UTF8.encode(stream_context.headers.request.get("x-token"))),
    ];
    // No closures in AssemblyScript: the SDK hands `this` back to the callback.
    const result = this.root.httpCall(config.authCluster, call, new ArrayBuffer(0), [], 5000, this, onAuthResponse);
    if (result != WasmResultValues.Ok) {
      log(LogLevelValues.error, "as-filter: http_call to " + config.authCluster + " failed: " + result.toString());
      send_local_response(500, "", String.UTF8.encode("auth call failed"), [], GrpcStatusValues.Unknown);
    }
    // Paused until onAuthResponse resumes or answers the request.
    return FilterHeadersStatusValues.StopIteration;
  }

  onRequestBody(body_buffer_length: usize, end_of_stream: bool): FilterDataStatusValues {
    // Decide on the whole body: buffer until the end.
    if (!end_of_stream) return FilterDataStatusValues.StopIterationAndBuffer;
    const body = String.UTF8.decode(get_buffer_bytes(BufferTypeValues.HttpRequestBody, 0, <u32>body_buffer_length));
    if (body.includes("forbidden")) {
      log(LogLevelValues.warn, "as-filter: forbidden request body");
      send_local_response(400, "", String.UTF8.encode("forbidden body"), [], GrpcStatusValues.Unknown);
      return FilterDataStatusValues.StopIterationAndBuffer;
    }
    return FilterDataStatusValues.Continue;
  }

  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-as-response", "yes");
    // The body may change length below.
    if (this.root.config.redactWord != "") stream_context.headers.response.remove("content-length");
    return FilterHeadersStatusValues.Continue;
  }

  onResponseBody(body_buffer_length: usize, end_of_stream: bool): FilterDataStatusValues {
    const word = this.root.config.redactWord;
    if (word == "") return FilterDataStatusValues.Continue;
    // A word may straddle chunks: look only at the whole body.
    if (!end_of_stream) return FilterDataStatusValues.StopIterationAndBuffer;
    const body = String.UTF8.decode(get_buffer_bytes(BufferTypeValues.HttpResponseBody, 0, <u32>body_buffer_length));
    if (body.includes(word)) {
      const redacted = String.UTF8.encode(body.replaceAll(word, "****"));
      const r = proxy_set_buffer_bytes(BufferTypeValues.HttpResponseBody, 0, <u32>body_buffer_length,
        changetype<usize>(redacted), redacted.byteLength);
      if (r != WasmResultValues.Ok) log(LogLevelValues.error, "as-filter: set_buffer_bytes = " + r.toString());
      else log(LogLevelValues.info, "as-filter: redacted the response body");
    }
    return FilterDataStatusValues.Continue;
  }
}

// The SDK calls this with the effective context set back to the request (`origin`); headers is
// the number of response headers, 0 when the call failed or was cancelled.
// No `cond ? "literal" : someString` here or elsewhere: asc 0.14 releases the borrowed branch
// twice (a reference-counting bug that traps in rt/pure).
function onAuthResponse(origin: Context, headers: u32, body_size: usize, trailers: u32): void {
  let status = "none";
  if (headers != 0) status = stream_context.headers.http_callback.get(":status");
  if (status == "200") {
    const user = String.UTF8.decode(get_buffer_bytes(BufferTypeValues.HttpCallResponseBody, 0, <u32>body_size));
    stream_context.headers.request.replace("x-auth-user", user);
    log(LogLevelValues.info, "as-filter: authorised " + user);
    origin.continueRequest();
  } else {
    log(LogLevelValues.info, "as-filter: auth answered " + status);
    send_local_response(403, "", String.UTF8.encode("denied by as-filter"), [], GrpcStatusValues.Unknown);
  }
}

// The SDK picks the factory by the plugin_root_id property: Envoy's root_id when the host is
// configured with one, "" by default, so register under both.
registerRootContext((context_id: u32): RootContext => new AsFilterRoot(context_id), "as_filter");
registerRootContext((context_id: u32): RootContext => new AsFilterRoot(context_id), "");
