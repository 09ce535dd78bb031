/*
 * weir.h: write Weir gateway plugins in C.
 *
 * A thin helper layer over the bindings `wit-bindgen c` generates from `wit/plugin.wit`
 * (`gen/plugin.h`, included below). Everything in `plugin.h` stays available; this header only
 * makes the common cases short and hard to get wrong.
 *
 * A plugin implements the exports of the `plugin` world:
 *
 *     bool exports_plugin_init(plugin_string_t *config, plugin_plugin_info_t *ret,
 *                              plugin_string_t *err);            // required
 *     void exports_plugin_on_request(plugin_request_decision_t *ret);   // required
 *     void exports_plugin_on_response(plugin_response_decision_t *ret); // optional
 *     void exports_plugin_on_body_chunk(plugin_direction_t, plugin_list_u8_t *chunk,
 *                                       plugin_list_u8_t *ret);          // optional
 *     void exports_plugin_on_body_end(plugin_direction_t, plugin_body_end_t *ret); // optional
 *
 * weir.c defines the three optional ones as weak symbols (continue; pass each chunk through;
 * add nothing at the end), so a plugin defines them only if it asked for a response hook or a
 * streamed body.
 *
 * Ownership, as in every wit-bindgen C binding:
 * - Arguments passed to an export belong to the export (free them, e.g. `plugin_string_free`).
 *   What an export returns is freed by the generated `cabi_post_*` functions, so it must be
 *   heap-allocated: the builders below (`weir_respond`, `weir_init_error`, ...) take care of it.
 * - What an import returns through an out-parameter belongs to the caller. The helpers below
 *   return plain heap copies (`char *`, `uint8_t *`) that the caller releases with `free()`.
 *
 * Strings passed *to* helpers are NUL-terminated C strings and are only borrowed.
 *
 * Configuration: `init` receives the chain entry's `config` table encoded as JSON
 * (`{}` when there is none); the `weir_json_*` functions read it without any allocation that
 * the caller has to manage except the strings they return.
 */
#ifndef WEIR_H
#define WEIR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define WEIR_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define WEIR_PRINTF(fmt, args)
#endif

/* ------------------------------------------------------------------------------------------ */
/* Strings                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* A `plugin_string_t` viewing the C string `s` (not copied: valid as long as `s` is). Use it to
 * pass strings to imports. `s` may be NULL (an empty string). */
plugin_string_t weir_str(const char *s);

/* Whether `s` holds exactly the bytes of the C string `c`. */
bool weir_str_eq(const plugin_string_t *s, const char *c);

/* A NUL-terminated heap copy of `s` (free it with `free()`), or NULL if allocation failed.
 * A string containing NUL bytes is cut at the first one. */
char *weir_str_cstr(const plugin_string_t *s);

/* Stores a heap copy of the C string `s` in `out`, suitable for returning from an export (the
 * generated cabi_post functions free it). Returns false (and an empty `out`) if allocation
 * failed. */
bool weir_str_dup(plugin_string_t *out, const char *s);

/* ------------------------------------------------------------------------------------------ */
/* Logging                                                                                    */
/* ------------------------------------------------------------------------------------------ */

#define WEIR_LOG_TRACE WEIR_PLUGIN_LOG_LEVEL_TRACE
#define WEIR_LOG_DEBUG WEIR_PLUGIN_LOG_LEVEL_DEBUG
#define WEIR_LOG_INFO WEIR_PLUGIN_LOG_LEVEL_INFO
#define WEIR_LOG_WARN WEIR_PLUGIN_LOG_LEVEL_WARN
#define WEIR_LOG_ERROR WEIR_PLUGIN_LOG_LEVEL_ERROR

/* Writes a printf-style record to the gateway's log (tagged with the plugin and the route).
 * Records below the gateway's level are dropped by the host. */
void weir_log(weir_plugin_log_level_t level, const char *fmt, ...) WEIR_PRINTF(2, 3);

/* ------------------------------------------------------------------------------------------ */
/* The request (changes only during on_request)                                              */
/* ------------------------------------------------------------------------------------------ */

/* The first value of the request header `name` (case-insensitive). Returns whether it is
 * present; if so and `out` is not NULL, `*out` is a heap copy the caller frees. `*out` is NULL
 * when the header is absent or the copy could not be allocated (then false is returned). */
bool weir_request_header(const char *name, char **out);

/* Replaces every value of the request header `name` with `value`. False if the host refused
 * (invalid name or value, or read-only in this phase); the reason is logged at debug level. */
bool weir_request_set_header(const char *name, const char *value);

/* Adds a value to the request header `name`, keeping existing ones. */
bool weir_request_append_header(const char *name, const char *value);

/* Removes every value of the request header `name` (absent is not an error). */
bool weir_request_remove_header(const char *name);

/* The method (e.g. "GET") and the path with query, as heap copies (NULL if allocation
 * failed). */
char *weir_request_method(void);
char *weir_request_path(void);

/* Changes the path and query sent upstream (must start with '/'). */
bool weir_request_set_path(const char *path);

/* The buffered request body (only if `init` asked for `weir_buffered(limit)`). Returns whether
 * a body is available; then `*ptr` is a heap copy of `*len` bytes the caller frees (NULL when the
 * body is empty). */
bool weir_request_body(uint8_t **ptr, size_t *len);

/* Replaces the body sent upstream (the host updates content-length). Only a plugin that asked
 * for the body may do so. `ptr` may be NULL when `len` is 0. */
bool weir_request_set_body(const uint8_t *ptr, size_t len);

/* ------------------------------------------------------------------------------------------ */
/* The response (meaningful only during on_response)                                         */
/* ------------------------------------------------------------------------------------------ */

/* The status code. */
uint16_t weir_response_status(void);

/* Changes the status code (100-999). */
bool weir_response_set_status(uint16_t status);

/* As weir_request_header and friends, for the response. */
bool weir_response_header(const char *name, char **out);
bool weir_response_set_header(const char *name, const char *value);
bool weir_response_append_header(const char *name, const char *value);
bool weir_response_remove_header(const char *name);

/* As weir_request_body / weir_request_set_body (needs `response_body` access). */
bool weir_response_body(uint8_t **ptr, size_t *len);
bool weir_response_set_body(const uint8_t *ptr, size_t len);

/* ------------------------------------------------------------------------------------------ */
/* The per-request context shared by the chain                                               */
/* ------------------------------------------------------------------------------------------ */

/* Sets the authenticated principal (set it only after successful verification). */
void weir_context_set_principal(const char *principal);

/* The principal an earlier plugin set; `*out` as in weir_request_header. */
bool weir_context_principal(char **out);

/* Free-form attributes for later plugins and hooks of this request. */
bool weir_context_get(const char *key, char **out);
void weir_context_set(const char *key, const char *value);
void weir_context_remove(const char *key);

/* ------------------------------------------------------------------------------------------ */
/* kv (needs `capabilities = ["kv"]` in weir-plugin.toml and a `kv` grant)                     */
/* ------------------------------------------------------------------------------------------ */

/* Atomically adds `delta` to the integer at `key` (absent counts as 0) and stores the new value
 * in `*out` (may be NULL). False on any error (not granted, invalid key, not a number, backend
 * failure); the reason is logged at warn level. Only a plugin that calls this imports `kv`. */
bool weir_kv_increment(const char *key, int64_t delta, int64_t *out);

/* ------------------------------------------------------------------------------------------ */
/* Decisions: fill the out-parameter of an export                                             */
/* ------------------------------------------------------------------------------------------ */

/* on_request: go on with the next plugin, then the upstream. */
void weir_continue(plugin_request_decision_t *ret);

/* on_request: answer now with `status`, the text body `body` (may be NULL or "") as
 * `content-type: text/plain; charset=utf-8`, and optionally one more header (`header_name` and
 * `header_value` both non-NULL; the name is lower-cased; a `content-type` given here replaces
 * the default). Everything is heap-allocated, as cabi_post expects. Returns false if an
 * allocation failed: the response then has the status but no headers and no body. */
bool weir_respond(plugin_request_decision_t *ret, uint16_t status, const char *body,
                  const char *header_name, const char *header_value);

/* on_request: send the request to the named upstream instead of the route's. False (and a
 * `continue` decision) if allocation failed. */
bool weir_route(plugin_request_decision_t *ret, const char *upstream);

/* on_response: pass the (possibly modified) response on. */
void weir_response_continue(plugin_response_decision_t *ret);

/* on_response: replace the response entirely; arguments as in weir_respond. */
bool weir_replace(plugin_response_decision_t *ret, uint16_t status, const char *body,
                  const char *header_name, const char *header_value);

/* ------------------------------------------------------------------------------------------ */
/* init: what the plugin tells the host, or why it refuses its config                        */
/* ------------------------------------------------------------------------------------------ */

typedef weir_plugin_types_body_access_t weir_body_access_t;

/* The body passes untouched and is never copied into Wasm (the default). */
#define WEIR_BODY_NONE ((weir_body_access_t){.tag = WEIR_PLUGIN_TYPES_BODY_ACCESS_NONE})
/* Hooks run on the headers; the body arrives through on_body_chunk / on_body_end. */
#define WEIR_BODY_STREAMED ((weir_body_access_t){.tag = WEIR_PLUGIN_TYPES_BODY_ACCESS_STREAMED})
/* Read the whole body, up to `limit` bytes, before the hook runs. */
weir_body_access_t weir_buffered(uint32_t limit);
#define WEIR_BODY_BUFFERED(limit) weir_buffered(limit)

/* Fills the `plugin-info` `init` returns and returns true, so that `init` can end with
 * `return weir_info(ret, false, WEIR_BODY_NONE, WEIR_BODY_NONE);`. */
bool weir_info(plugin_plugin_info_t *ret, bool response_hook, weir_body_access_t request_body,
               weir_body_access_t response_body);

/* Refuses the configuration with a printf-style message (the host reports it with the route and
 * plugin names) and returns false, so that `init` can `return weir_init_error(err, ...);`. */
bool weir_init_error(plugin_string_t *err, const char *fmt, ...) WEIR_PRINTF(2, 3);

/* ------------------------------------------------------------------------------------------ */
/* A minimal JSON reader, for the config `init` receives                                      */
/* ------------------------------------------------------------------------------------------ */
/*
 * Every function takes the whole JSON text (e.g. the `config` argument of `init`), checks that it
 * is one well-formed JSON object, and looks up a key of that object (the first one, if a key is
 * repeated). Malformed input never crashes: it gives WEIR_JSON_INVALID. Nesting deeper than
 * WEIR_JSON_MAX_DEPTH is treated as malformed. Strings are unescaped (\uXXXX included, surrogate
 * pairs combined); returned strings are NUL-terminated heap copies the caller frees (a string
 * containing \u0000 is cut there).
 */

#define WEIR_JSON_MAX_DEPTH 64

typedef enum {
    WEIR_JSON_OK = 0,
    /* The key is absent (or an array index is out of range, or the keys are exhausted). */
    WEIR_JSON_MISSING,
    /* The value exists but has another type (a JSON `null` is of no type asked for here). */
    WEIR_JSON_TYPE,
    /* The text is not a well-formed JSON object. */
    WEIR_JSON_INVALID,
    /* An allocation failed. */
    WEIR_JSON_NOMEM,
} weir_json_status_t;

/* Whether `json` is exactly one well-formed JSON object (surrounding whitespace allowed). */
bool weir_json_is_object(const plugin_string_t *json);

/* The string at `key`; `*out` (if `out` is not NULL) is a heap copy on WEIR_JSON_OK, else NULL. */
weir_json_status_t weir_json_string(const plugin_string_t *json, const char *key, char **out);

/* The boolean at `key`. `*out` is left unchanged unless WEIR_JSON_OK, so it may hold a default. */
weir_json_status_t weir_json_bool(const plugin_string_t *json, const char *key, bool *out);

/* The number at `key`, as a double. `*out` unchanged unless WEIR_JSON_OK. */
weir_json_status_t weir_json_number(const plugin_string_t *json, const char *key, double *out);

/* The number at `key`, which must be an integer (no fraction or exponent) that fits in int64_t;
 * otherwise WEIR_JSON_TYPE. `*out` unchanged unless WEIR_JSON_OK. */
weir_json_status_t weir_json_int(const plugin_string_t *json, const char *key, int64_t *out);

/* The number of elements of the array at `key` (elements of any type). */
weir_json_status_t weir_json_array_len(const plugin_string_t *json, const char *key, size_t *len);

/* Element `index` of the array at `key`, which must be a string (WEIR_JSON_TYPE otherwise;
 * WEIR_JSON_MISSING past the end). `*out` as in weir_json_string. */
weir_json_status_t weir_json_array_string(const plugin_string_t *json, const char *key,
                                          size_t index, char **out);

/* Whether the array at `key` has a string element equal to `value`. False if the key is absent,
 * not an array, or the text is malformed. */
bool weir_json_array_contains(const plugin_string_t *json, const char *key, const char *value);

/* The object at `key`, as a view into `json` (not copied; valid as long as `json` is) that can be
 * passed to every weir_json_* function to read nested objects. */
weir_json_status_t weir_json_object(const plugin_string_t *json, const char *key,
                                    plugin_string_t *out);

/* Iterates the keys of the object, in order:
 *
 *     size_t cursor = 0;
 *     char *key;
 *     weir_json_status_t st;
 *     while ((st = weir_json_next_key(config, &cursor, &key)) == WEIR_JSON_OK) { ...; free(key); }
 *     // st is WEIR_JSON_MISSING at the end, WEIR_JSON_INVALID if the text is malformed
 *
 * `cursor` starts at 0 and is advanced by each call. `key` may be NULL to only count. */
weir_json_status_t weir_json_next_key(const plugin_string_t *json, size_t *cursor, char **key);

/* Finds a key of the object that is not in `known` (a NULL-terminated list), to refuse unknown
 * keys. Returns WEIR_JSON_OK and a heap copy of the first such key in `*unknown` (if not NULL);
 * WEIR_JSON_MISSING if every key is known; WEIR_JSON_INVALID if the text is malformed. */
weir_json_status_t weir_json_unknown_key(const plugin_string_t *json, const char *const *known,
                                         char **unknown);

#ifdef __cplusplus
}
#endif

#endif /* WEIR_H */
