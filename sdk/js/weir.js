// Write Weir gateway plugins in JavaScript.
//
// A plugin is one module (`app.js`) whose exports are made by `plugin(...)`:
//
//   import { plugin, request, respond, CONTINUE } from './weir.js';
//
//   export const { init, onRequest, onResponse, onBodyChunk, onBodyEnd } = plugin({
//     configure(config) { this.header = config.header ?? 'x-user'; },
//     onRequest() {
//       return request.header(this.header) === undefined
//         ? respond(401, `missing ${this.header}`)
//         : CONTINUE;
//     },
//   });
//
// `weir plugin build` turns the directory into a component with componentize-js (the WIT world
// trimmed to the capabilities `weir-plugin.toml` declares). The contract is `wit/plugin.wit`;
// this module only makes it pleasant:
//
// - `configure(config)` gets the chain entry's `config` table as an object; throw to refuse it
//   (the message is reported with the route and plugin at load time).
// - `responseHook`, `requestBody` and `responseBody` on the definition (or set on `this` in
//   `configure`) are the `plugin-info` (`NONE`, `buffered(limit)` or `STREAMED`).
// - Decisions: `CONTINUE`, `respond(status, body, headers)`, `route(name)`; in responses
//   `RESPONSE_CONTINUE` and `replace(status, body, headers)`.
// - `request`, `response`, `context` and `log` are the host interfaces. Capabilities the plugin
//   declared are imported from `weir:plugin/kv@0.2.0` (or `outbound`, `metrics`, `secrets`).
//
// An exception escaping a hook is a trap: the gateway applies the route's `on_error` and logs the
// message with the plugin's name.

import * as request from 'weir:plugin/request@0.2.0';
import * as response from 'weir:plugin/response@0.2.0';
import * as context from 'weir:plugin/context@0.2.0';
import * as logging from 'weir:plugin/log@0.2.0';

export { request, response, context };

/** Logging into the gateway's log, tagged with the plugin and route. */
export const log = {
  trace: (m) => logging.log('trace', String(m)),
  debug: (m) => logging.log('debug', String(m)),
  info: (m) => logging.log('info', String(m)),
  warn: (m) => logging.log('warn', String(m)),
  error: (m) => logging.log('error', String(m)),
};

export const NONE = { tag: 'none' };
export const STREAMED = { tag: 'streamed' };
/** Body access: read the whole body, up to `limit` bytes, before the hook runs. */
export const buffered = (limit) => ({ tag: 'buffered', val: limit });

export const CONTINUE = { tag: 'continue' };
export const RESPONSE_CONTINUE = { tag: 'continue' };

const encoder = new TextEncoder();

function local(status, body, headers) {
  const fields = Object.entries(headers instanceof Array ? Object.fromEntries(headers) : headers)
    .map(([k, v]) => [k.toLowerCase(), String(v)]);
  if (typeof body === 'string') {
    if (!fields.some(([k]) => k === 'content-type')) {
      fields.push(['content-type', 'text/plain; charset=utf-8']);
    }
    body = encoder.encode(body);
  }
  return { status, headers: fields, body };
}

/** Answer now; the rest of the chain and the upstream are skipped. */
export const respond = (status, body = '', headers = {}) =>
  ({ tag: 'respond', val: local(status, body, headers) });

/** Send the request to this named upstream instead of the route's. */
export const route = (upstream) => ({ tag: 'route', val: upstream });

/** Replace the response entirely. */
export const replace = (status, body = '', headers = {}) =>
  ({ tag: 'replace', val: local(status, body, headers) });

/** The five WIT exports, from a plugin definition with defaults for what it leaves out. */
export function plugin(definition) {
  const p = Object.assign(Object.create(definition), { config: {} });
  return {
    init(config) {
      try {
        const parsed = JSON.parse(config);
        p.config = parsed;
        if (definition.configure) definition.configure.call(p, parsed);
      } catch (e) {
        // componentize-js turns a thrown string into `err(string)`: the refusal's message.
        throw String(e && e.message !== undefined ? e.message : e);
      }
      // Read after `configure`, which may set them on `this` from the config.
      return {
        responseHook: Boolean(p.responseHook),
        requestBody: p.requestBody ?? NONE,
        responseBody: p.responseBody ?? NONE,
      };
    },
    onRequest: () => (definition.onRequest ? definition.onRequest.call(p) : CONTINUE),
    onResponse: () => (definition.onResponse ? definition.onResponse.call(p) : RESPONSE_CONTINUE),
    onBodyChunk: (direction, chunk) =>
      definition.onBodyChunk ? definition.onBodyChunk.call(p, direction, chunk) : chunk,
    onBodyEnd: (direction) =>
      definition.onBodyEnd
        ? definition.onBodyEnd.call(p, direction)
        : { tail: new Uint8Array(), trailers: [] },
  };
}
