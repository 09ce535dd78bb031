// `allowlist` in JavaScript: see ../README.md for the behaviour, identical in every language.

import { plugin, request, response, context, respond, buffered, CONTINUE, RESPONSE_CONTINUE } from './weir.js';
import { increment } from 'weir:plugin/kv@0.2.0';

const KNOWN = new Set(['header', 'allow', 'tag', 'upper_body', 'count']);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export const { init, onRequest, onResponse, onBodyChunk, onBodyEnd } = plugin({
  responseHook: true,

  configure(config) {
    for (const key of Object.keys(config)) {
      if (!KNOWN.has(key)) throw new Error(`unknown config key "${key}"`);
    }
    this.header = config.header ?? 'x-user';
    this.allow = config.allow ?? [];
    if (this.allow.length === 0) throw new Error('`allow` must not be empty');
    this.tag = config.tag ?? 'js';
    this.upperBody = Boolean(config.upper_body);
    this.count = Boolean(config.count);
    if (this.upperBody) this.requestBody = buffered(64 * 1024);
  },

  onRequest() {
    if (request.header('x-trap') !== undefined) throw new Error('allowlist trap requested');
    const user = request.header(this.header);
    if (user === undefined || !this.allow.includes(user)) {
      return respond(403, 'denied', { 'x-denied-by': this.tag });
    }
    request.setHeader('x-allowed-user', user);
    context.setPrincipal(user);
    if (this.count) {
      const seen = increment(`seen:${user}`, 1n, undefined);
      request.setHeader('x-seen', String(seen));
    }
    if (this.upperBody) {
      const body = request.body() ?? new Uint8Array();
      request.setBody(encoder.encode(decoder.decode(body).toUpperCase()));
    }
    return CONTINUE;
  },

  onResponse() {
    response.setHeader('x-policy', this.tag);
    return RESPONSE_CONTINUE;
  },
});
