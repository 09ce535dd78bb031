/* `allowlist` in C: see ../README.md for the behaviour, identical in every language. */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weir.h"

static const char *const KNOWN[] = {"header", "allow", "tag", "upper_body", "count", NULL};

/* The configuration, read once by init (one instance serves one route). */
static char *header;
static char *tag;
static char **allow;
static size_t allow_len;
static bool upper_body;
static bool count;

static void reset(void) {
    free(header);
    free(tag);
    for (size_t i = 0; i < allow_len; i++) free(allow[i]);
    free(allow);
    header = tag = NULL;
    allow = NULL;
    allow_len = 0;
    upper_body = count = false;
}

/* Reads an optional string key into *out, or a heap copy of `fallback`. */
static bool string_or(const plugin_string_t *config, const char *key, const char *fallback,
                      char **out, plugin_string_t *err) {
    switch (weir_json_string(config, key, out)) {
    case WEIR_JSON_OK: return true;
    case WEIR_JSON_MISSING:
        if ((*out = strdup(fallback))) return true;
        return weir_init_error(err, "out of memory");
    case WEIR_JSON_NOMEM: return weir_init_error(err, "out of memory");
    default: return weir_init_error(err, "`%s` must be a string", key);
    }
}

static bool bool_or_false(const plugin_string_t *config, const char *key, bool *out,
                          plugin_string_t *err) {
    *out = false;
    switch (weir_json_bool(config, key, out)) {
    case WEIR_JSON_OK:
    case WEIR_JSON_MISSING: return true;
    default: return weir_init_error(err, "`%s` must be a boolean", key);
    }
}

static bool configure(const plugin_string_t *config, plugin_string_t *err) {
    if (!weir_json_is_object(config)) return weir_init_error(err, "config must be a JSON object");

    char *unknown = NULL;
    switch (weir_json_unknown_key(config, KNOWN, &unknown)) {
    case WEIR_JSON_OK:
        weir_init_error(err, "unknown config key \"%s\"", unknown);
        free(unknown);
        return false;
    case WEIR_JSON_MISSING: break; /* every key is known */
    default: return weir_init_error(err, "out of memory");
    }

    size_t n = 0;
    weir_json_status_t st = weir_json_array_len(config, "allow", &n);
    if (st != WEIR_JSON_OK && st != WEIR_JSON_MISSING)
        return weir_init_error(err, "`allow` must be an array of strings");
    if (n > 0) {
        allow = calloc(n, sizeof *allow);
        if (!allow) return weir_init_error(err, "out of memory");
        for (; allow_len < n; allow_len++) {
            if (weir_json_array_string(config, "allow", allow_len, &allow[allow_len]) != WEIR_JSON_OK)
                return weir_init_error(err, "`allow` must be an array of strings");
        }
    }

    if (!string_or(config, "header", "x-user", &header, err)) return false;
    if (!string_or(config, "tag", "c", &tag, err)) return false;
    if (!bool_or_false(config, "upper_body", &upper_body, err)) return false;
    if (!bool_or_false(config, "count", &count, err)) return false;

    if (allow_len == 0) return weir_init_error(err, "`allow` must not be empty");
    return true;
}

bool exports_plugin_init(plugin_string_t *config, plugin_plugin_info_t *ret, plugin_string_t *err) {
    reset();
    bool ok = configure(config, err);
    plugin_string_free(config);
    if (!ok) {
        reset();
        return false;
    }
    return weir_info(ret, true, upper_body ? weir_buffered(64 * 1024) : WEIR_BODY_NONE,
                     WEIR_BODY_NONE);
}

static bool allowed(const char *user) {
    for (size_t i = 0; i < allow_len; i++) {
        if (strcmp(allow[i], user) == 0) return true;
    }
    return false;
}

void exports_plugin_on_request(plugin_request_decision_t *ret) {
    if (weir_request_header("x-trap", NULL)) {
        fprintf(stderr, "allowlist trap requested\n");
        abort();
    }

    char *user = NULL;
    if (!weir_request_header(header, &user) || !allowed(user)) {
        free(user);
        weir_respond(ret, 403, "denied", "x-denied-by", tag);
        return;
    }

    weir_request_set_header("x-allowed-user", user);
    weir_context_set_principal(user);

    if (count) {
        size_t key_len = strlen("seen:") + strlen(user) + 1;
        char *key = malloc(key_len);
        int64_t seen;
        if (key) {
            snprintf(key, key_len, "seen:%s", user);
            if (weir_kv_increment(key, 1, &seen)) {
                char text[24];
                snprintf(text, sizeof text, "%" PRId64, seen);
                weir_request_set_header("x-seen", text);
            }
            free(key);
        }
    }

    if (upper_body) {
        uint8_t *body = NULL;
        size_t len = 0;
        weir_request_body(&body, &len);
        for (size_t i = 0; i < len; i++) {
            if (body[i] >= 'a' && body[i] <= 'z') body[i] = (uint8_t)(body[i] - 'a' + 'A');
        }
        weir_request_set_body(body, len);
        free(body);
    }

    free(user);
    weir_continue(ret);
}

void exports_plugin_on_response(plugin_response_decision_t *ret) {
    weir_response_set_header("x-policy", tag);
    weir_response_continue(ret);
}
