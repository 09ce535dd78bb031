// `{{name}}`: a Weir plugin. Blocks requests carrying `x-block`; marks the others with
// `x-plugin: {{name}}`. Build with `weir plugin build .`, smoke-test with `weir plugin test .`.

import { plugin, request, respond, CONTINUE } from './weir.js';

export const { init, onRequest, onResponse, onBodyChunk, onBodyEnd } = plugin({
  // The chain entry's `config` table, as an object; throw to refuse it.
  configure(config) {},

  onRequest() {
    if (request.header('x-block') !== undefined) {
      return respond(403, 'blocked by {{name}}');
    }
    request.setHeader('x-plugin', '{{name}}');
    return CONTINUE;
  },
});
