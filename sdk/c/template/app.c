/*
 * `{{name}}`: a Weir plugin. Blocks requests carrying `x-block`; marks the others with
 * `x-plugin: {{name}}`. Build with `weir plugin build .`, smoke-test with `weir plugin test .`.
 *
 * The helpers are documented in weir.h; the raw bindings (generated from wit/plugin.wit) are in
 * plugin.h. on_response, on_body_chunk and on_body_end have defaults in weir.c: define them here
 * when init asks for a response hook or a streamed body.
 */

#include <stdlib.h>

#include "weir.h"

/* Called once per instance with the chain entry's `config` table as JSON. Return
 * weir_init_error(err, ...) to refuse it. */
bool exports_plugin_init(plugin_string_t *config, plugin_plugin_info_t *ret, plugin_string_t *err) {
    bool ok = weir_json_is_object(config);
    plugin_string_free(config);
    if (!ok) return weir_init_error(err, "config must be a JSON object");
    /* No response hook; bodies pass through untouched. */
    return weir_info(ret, false, WEIR_BODY_NONE, WEIR_BODY_NONE);
}

void exports_plugin_on_request(plugin_request_decision_t *ret) {
    if (weir_request_header("x-block", NULL)) {
        weir_respond(ret, 403, "blocked by {{name}}", NULL, NULL);
        return;
    }
    weir_request_set_header("x-plugin", "{{name}}");
    weir_continue(ret);
}
