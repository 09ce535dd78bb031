/*
 * weir.c: the helpers declared in weir.h. See weir.h for the documentation of each function.
 */
#include "weir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------------------------ */
/* Strings                                                                                    */
/* ------------------------------------------------------------------------------------------ */

plugin_string_t weir_str(const char *s) {
    plugin_string_t out;
    out.ptr = (uint8_t *)(s ? s : "");
    out.len = s ? strlen(s) : 0;
    return out;
}

bool weir_str_eq(const plugin_string_t *s, const char *c) {
    size_t n = c ? strlen(c) : 0;
    return s && s->len == n && (n == 0 || memcmp(s->ptr, c, n) == 0);
}

/* A NUL-terminated heap copy of `len` bytes (cut at the first NUL), or NULL. */
static char *copy_cstr(const uint8_t *ptr, size_t len) {
    const uint8_t *nul = len ? memchr(ptr, 0, len) : NULL;
    if (nul) len = (size_t)(nul - ptr);
    char *out = malloc(len + 1);
    if (!out) return NULL;
    if (len) memcpy(out, ptr, len);
    out[len] = '\0';
    return out;
}

char *weir_str_cstr(const plugin_string_t *s) {
    if (!s) return NULL;
    return copy_cstr(s->ptr, s->len);
}

/* A heap copy of `len` bytes for a value returned from an export. An empty value gets a NULL
 * pointer: cabi_post frees only non-empty values, so an empty allocation would leak. */
static bool dup_bytes(uint8_t **out_ptr, size_t *out_len, const void *ptr, size_t len) {
    *out_ptr = NULL;
    *out_len = 0;
    if (len == 0) return true;
    uint8_t *copy = malloc(len);
    if (!copy) return false;
    memcpy(copy, ptr, len);
    *out_ptr = copy;
    *out_len = len;
    return true;
}

bool weir_str_dup(plugin_string_t *out, const char *s) {
    return dup_bytes(&out->ptr, &out->len, s ? s : "", s ? strlen(s) : 0);
}

/* Takes an owned string returned by an import, gives a C copy, frees the original. */
static bool take_option_string(bool present, plugin_string_t *value, char **out) {
    if (out) *out = NULL;
    if (!present) return false;
    if (out) {
        *out = weir_str_cstr(value);
        if (!*out) present = false;
    }
    plugin_string_free(value);
    return present;
}

/* Takes an owned option<list<u8>> returned by an import. */
static bool take_option_bytes(bool present, plugin_list_u8_t *value, uint8_t **ptr, size_t *len) {
    if (ptr) *ptr = NULL;
    if (len) *len = 0;
    if (!present) return false;
    if (value->len > 0) {
        if (ptr) {
            /* The host's buffer is ours (allocated through cabi_realloc, i.e. malloc). */
            *ptr = value->ptr;
            if (len) *len = value->len;
            value->ptr = NULL;
            value->len = 0;
        } else {
            plugin_list_u8_free(value);
        }
    }
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Logging                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* A heap-allocated printf result (length in *len), or NULL. */
static char *vformat(const char *fmt, va_list ap, size_t *len) {
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0) return NULL;
    char *buf = malloc((size_t)n + 1);
    if (!buf) return NULL;
    vsnprintf(buf, (size_t)n + 1, fmt, ap);
    *len = (size_t)n;
    return buf;
}

void weir_log(weir_plugin_log_level_t level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t len = 0;
    char *msg = vformat(fmt, ap, &len);
    va_end(ap);
    plugin_string_t s;
    if (msg) {
        s.ptr = (uint8_t *)msg;
        s.len = len;
    } else {
        s = weir_str("(log message lost: out of memory)");
    }
    weir_plugin_log_log(level, &s);
    free(msg);
}

/* Logs and frees an edit error. */
static void edit_failed(const char *what, const char *name, weir_plugin_types_edit_error_t *err) {
    const char *reason = "read-only in this phase";
    switch (err->tag) {
    case WEIR_PLUGIN_TYPES_EDIT_ERROR_INVALID_HEADER_NAME: reason = "invalid header name"; break;
    case WEIR_PLUGIN_TYPES_EDIT_ERROR_INVALID_HEADER_VALUE: reason = "invalid header value"; break;
    case WEIR_PLUGIN_TYPES_EDIT_ERROR_INVALID_PATH: reason = "invalid path"; break;
    case WEIR_PLUGIN_TYPES_EDIT_ERROR_INVALID_STATUS: reason = "invalid status"; break;
    default: break;
    }
    weir_log(WEIR_LOG_DEBUG, "%s %s refused: %s", what, name ? name : "", reason);
    weir_plugin_types_edit_error_free(err);
}

/* ------------------------------------------------------------------------------------------ */
/* Request                                                                                    */
/* ------------------------------------------------------------------------------------------ */

bool weir_request_header(const char *name, char **out) {
    plugin_string_t n = weir_str(name), value;
    bool present = weir_plugin_request_header(&n, &value);
    return take_option_string(present, &value, out);
}

bool weir_request_set_header(const char *name, const char *value) {
    plugin_string_t n = weir_str(name), v = weir_str(value);
    weir_plugin_request_edit_error_t err;
    if (weir_plugin_request_set_header(&n, &v, &err)) return true;
    edit_failed("request set-header", name, &err);
    return false;
}

bool weir_request_append_header(const char *name, const char *value) {
    plugin_string_t n = weir_str(name), v = weir_str(value);
    weir_plugin_request_edit_error_t err;
    if (weir_plugin_request_append_header(&n, &v, &err)) return true;
    edit_failed("request append-header", name, &err);
    return false;
}

bool weir_request_remove_header(const char *name) {
    plugin_string_t n = weir_str(name);
    weir_plugin_request_edit_error_t err;
    if (weir_plugin_request_remove_header(&n, &err)) return true;
    edit_failed("request remove-header", name, &err);
    return false;
}

char *weir_request_method(void) {
    plugin_string_t s;
    weir_plugin_request_method(&s);
    char *out = weir_str_cstr(&s);
    plugin_string_free(&s);
    return out;
}

char *weir_request_path(void) {
    plugin_string_t s;
    weir_plugin_request_path(&s);
    char *out = weir_str_cstr(&s);
    plugin_string_free(&s);
    return out;
}

bool weir_request_set_path(const char *path) {
    plugin_string_t p = weir_str(path);
    weir_plugin_request_edit_error_t err;
    if (weir_plugin_request_set_path(&p, &err)) return true;
    edit_failed("request set-path", path, &err);
    return false;
}

bool weir_request_body(uint8_t **ptr, size_t *len) {
    plugin_list_u8_t body;
    bool present = weir_plugin_request_body(&body);
    return take_option_bytes(present, &body, ptr, len);
}

bool weir_request_set_body(const uint8_t *ptr, size_t len) {
    plugin_list_u8_t body = {(uint8_t *)(len ? ptr : (const uint8_t *)""), len};
    weir_plugin_request_edit_error_t err;
    if (weir_plugin_request_set_body(&body, &err)) return true;
    edit_failed("request set-body", NULL, &err);
    return false;
}

/* ------------------------------------------------------------------------------------------ */
/* Response                                                                                   */
/* ------------------------------------------------------------------------------------------ */

uint16_t weir_response_status(void) { return weir_plugin_response_status(); }

bool weir_response_set_status(uint16_t status) {
    weir_plugin_response_edit_error_t err;
    if (weir_plugin_response_set_status(status, &err)) return true;
    edit_failed("response set-status", NULL, &err);
    return false;
}

bool weir_response_header(const char *name, char **out) {
    plugin_string_t n = weir_str(name), value;
    bool present = weir_plugin_response_header(&n, &value);
    return take_option_string(present, &value, out);
}

bool weir_response_set_header(const char *name, const char *value) {
    plugin_string_t n = weir_str(name), v = weir_str(value);
    weir_plugin_response_edit_error_t err;
    if (weir_plugin_response_set_header(&n, &v, &err)) return true;
    edit_failed("response set-header", name, &err);
    return false;
}

bool weir_response_append_header(const char *name, const char *value) {
    plugin_string_t n = weir_str(name), v = weir_str(value);
    weir_plugin_response_edit_error_t err;
    if (weir_plugin_response_append_header(&n, &v, &err)) return true;
    edit_failed("response append-header", name, &err);
    return false;
}

bool weir_response_remove_header(const char *name) {
    plugin_string_t n = weir_str(name);
    weir_plugin_response_edit_error_t err;
    if (weir_plugin_response_remove_header(&n, &err)) return true;
    edit_failed("response remove-header", name, &err);
    return false;
}

bool weir_response_body(uint8_t **ptr, size_t *len) {
    plugin_list_u8_t body;
    bool present = weir_plugin_response_body(&body);
    return take_option_bytes(present, &body, ptr, len);
}

bool weir_response_set_body(const uint8_t *ptr, size_t len) {
    plugin_list_u8_t body = {(uint8_t *)(len ? ptr : (const uint8_t *)""), len};
    weir_plugin_response_edit_error_t err;
    if (weir_plugin_response_set_body(&body, &err)) return true;
    edit_failed("response set-body", NULL, &err);
    return false;
}

/* ------------------------------------------------------------------------------------------ */
/* Context                                                                                    */
/* ------------------------------------------------------------------------------------------ */

void weir_context_set_principal(const char *principal) {
    plugin_string_t p = weir_str(principal);
    weir_plugin_context_set_principal(&p);
}

bool weir_context_principal(char **out) {
    plugin_string_t value;
    bool present = weir_plugin_context_principal(&value);
    return take_option_string(present, &value, out);
}

bool weir_context_get(const char *key, char **out) {
    plugin_string_t k = weir_str(key), value;
    bool present = weir_plugin_context_get(&k, &value);
    return take_option_string(present, &value, out);
}

void weir_context_set(const char *key, const char *value) {
    plugin_string_t k = weir_str(key), v = weir_str(value);
    weir_plugin_context_set(&k, &v);
}

void weir_context_remove(const char *key) {
    plugin_string_t k = weir_str(key);
    weir_plugin_context_remove(&k);
}

/* ------------------------------------------------------------------------------------------ */
/* kv                                                                                         */
/* ------------------------------------------------------------------------------------------ */

bool weir_kv_increment(const char *key, int64_t delta, int64_t *out) {
    plugin_string_t k = weir_str(key);
    int64_t value = 0;
    weir_plugin_kv_kv_error_t err;
    if (weir_plugin_kv_increment(&k, delta, NULL, &value, &err)) {
        if (out) *out = value;
        return true;
    }
    const char *reason = "not granted";
    const plugin_string_t *detail = NULL;
    switch (err.tag) {
    case WEIR_PLUGIN_KV_KV_ERROR_INVALID: reason = "invalid"; detail = &err.val.invalid; break;
    case WEIR_PLUGIN_KV_KV_ERROR_NOT_A_NUMBER: reason = "not a number"; break;
    case WEIR_PLUGIN_KV_KV_ERROR_BACKEND: reason = "backend"; detail = &err.val.backend; break;
    default: break;
    }
    int dlen = detail ? (int)(detail->len > 1024 ? 1024 : detail->len) : 0;
    weir_log(WEIR_LOG_WARN, "kv increment %s failed: %s%s%.*s", key ? key : "", reason,
             dlen ? ": " : "", dlen, dlen ? (const char *)detail->ptr : "");
    weir_plugin_kv_kv_error_free(&err);
    return false;
}

/* ------------------------------------------------------------------------------------------ */
/* Decisions                                                                                  */
/* ------------------------------------------------------------------------------------------ */

void weir_continue(plugin_request_decision_t *ret) {
    memset(ret, 0, sizeof *ret);
    ret->tag = WEIR_PLUGIN_TYPES_REQUEST_DECISION_CONTINUE;
}

void weir_response_continue(plugin_response_decision_t *ret) {
    memset(ret, 0, sizeof *ret);
    ret->tag = WEIR_PLUGIN_TYPES_RESPONSE_DECISION_CONTINUE;
}

static void field_free(weir_plugin_types_field_t *f) {
    free(f->f0.ptr);
    free(f->f1.ptr);
    f->f0.ptr = f->f1.ptr = NULL;
    f->f0.len = f->f1.len = 0;
}

/* Builds a local response; on allocation failure, frees what was built, leaves only the status
 * and returns false. */
static bool local_response(weir_plugin_types_local_response_t *r, uint16_t status, const char *body,
                           const char *header_name, const char *header_value) {
    memset(r, 0, sizeof *r);
    r->status = status;
    bool extra = header_name && header_value;
    bool own_type = extra && strcasecmp(header_name, "content-type") == 0;
    size_t count = (own_type ? 0 : 1) + (extra ? 1 : 0);
    weir_plugin_types_field_t *fields = calloc(count, sizeof *fields);
    if (!fields) return false;
    size_t i = 0;
    bool ok = true;
    if (!own_type) {
        ok = weir_str_dup(&fields[i].f0, "content-type") &&
             weir_str_dup(&fields[i].f1, "text/plain; charset=utf-8");
        i++;
    }
    if (ok && extra) {
        ok = weir_str_dup(&fields[i].f0, header_name) && weir_str_dup(&fields[i].f1, header_value);
        for (size_t k = 0; k < fields[i].f0.len; k++) {
            uint8_t c = fields[i].f0.ptr[k];
            if (c >= 'A' && c <= 'Z') fields[i].f0.ptr[k] = (uint8_t)(c - 'A' + 'a');
        }
        i++;
    }
    if (ok) ok = dup_bytes(&r->body.ptr, &r->body.len, body ? body : "", body ? strlen(body) : 0);
    if (!ok) {
        for (size_t k = 0; k < count; k++) field_free(&fields[k]);
        free(fields);
        memset(r, 0, sizeof *r);
        r->status = status;
        return false;
    }
    r->headers.ptr = fields;
    r->headers.len = count;
    return true;
}

bool weir_respond(plugin_request_decision_t *ret, uint16_t status, const char *body,
                  const char *header_name, const char *header_value) {
    memset(ret, 0, sizeof *ret);
    ret->tag = WEIR_PLUGIN_TYPES_REQUEST_DECISION_RESPOND;
    return local_response(&ret->val.respond, status, body, header_name, header_value);
}

bool weir_replace(plugin_response_decision_t *ret, uint16_t status, const char *body,
                  const char *header_name, const char *header_value) {
    memset(ret, 0, sizeof *ret);
    ret->tag = WEIR_PLUGIN_TYPES_RESPONSE_DECISION_REPLACE;
    return local_response(&ret->val.replace, status, body, header_name, header_value);
}

bool weir_route(plugin_request_decision_t *ret, const char *upstream) {
    memset(ret, 0, sizeof *ret);
    ret->tag = WEIR_PLUGIN_TYPES_REQUEST_DECISION_ROUTE;
    if (weir_str_dup(&ret->val.route, upstream)) return true;
    weir_continue(ret);
    return false;
}

/* ------------------------------------------------------------------------------------------ */
/* init                                                                                       */
/* ------------------------------------------------------------------------------------------ */

weir_body_access_t weir_buffered(uint32_t limit) {
    weir_body_access_t a;
    memset(&a, 0, sizeof a);
    a.tag = WEIR_PLUGIN_TYPES_BODY_ACCESS_BUFFERED;
    a.val.buffered = limit;
    return a;
}

bool weir_info(plugin_plugin_info_t *ret, bool response_hook, weir_body_access_t request_body,
               weir_body_access_t response_body) {
    memset(ret, 0, sizeof *ret);
    ret->response_hook = response_hook;
    ret->request_body = request_body;
    ret->response_body = response_body;
    return true;
}

bool weir_init_error(plugin_string_t *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t len = 0;
    char *msg = vformat(fmt, ap, &len);
    va_end(ap);
    err->ptr = NULL;
    err->len = 0;
    if (msg && len > 0) {
        err->ptr = (uint8_t *)msg; /* freed by cabi_post_init */
        err->len = len;
    } else {
        free(msg);
    }
    return false;
}

/* ------------------------------------------------------------------------------------------ */
/* Default optional exports (weak: a plugin's own definitions replace them)                   */
/* ------------------------------------------------------------------------------------------ */

__attribute__((weak)) void exports_plugin_on_response(plugin_response_decision_t *ret) {
    weir_response_continue(ret);
}

__attribute__((weak)) void exports_plugin_on_body_chunk(plugin_direction_t direction,
                                                        plugin_list_u8_t *chunk,
                                                        plugin_list_u8_t *ret) {
    (void)direction;
    *ret = *chunk; /* pass it on: ownership moves to the return value */
}

__attribute__((weak)) void exports_plugin_on_body_end(plugin_direction_t direction,
                                                      plugin_body_end_t *ret) {
    (void)direction;
    memset(ret, 0, sizeof *ret);
}

/* ------------------------------------------------------------------------------------------ */
/* JSON                                                                                       */
/* ------------------------------------------------------------------------------------------ */

typedef const uint8_t *jp; /* a position in the text; NULL means "malformed" */

static jp skip_ws(jp p, jp end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

static int hex_digit(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Four hex digits at p (p + 4 <= end checked by the caller), or -1. */
static long hex4(jp p) {
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit(p[i]);
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static size_t utf8_encode(unsigned long cp, uint8_t out[4]) {
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decodes one character of a string body at *pp. Returns 1 with its UTF-8 bytes in buf/n, 0 at
 * the closing quote (consumed), -1 if malformed. */
static int str_next(jp *pp, jp end, uint8_t buf[4], size_t *n) {
    jp p = *pp;
    if (p >= end) return -1;
    uint8_t c = *p;
    if (c == '"') {
        *pp = p + 1;
        return 0;
    }
    if (c < 0x20) return -1;
    if (c != '\\') {
        buf[0] = c;
        *n = 1;
        *pp = p + 1;
        return 1;
    }
    p++;
    if (p >= end) return -1;
    c = *p++;
    switch (c) {
    case '"': buf[0] = '"'; break;
    case '\\': buf[0] = '\\'; break;
    case '/': buf[0] = '/'; break;
    case 'b': buf[0] = '\b'; break;
    case 'f': buf[0] = '\f'; break;
    case 'n': buf[0] = '\n'; break;
    case 'r': buf[0] = '\r'; break;
    case 't': buf[0] = '\t'; break;
    case 'u': {
        if (end - p < 4) return -1;
        long cp = hex4(p);
        if (cp < 0) return -1;
        p += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            long lo = -1;
            if (end - p >= 6 && p[0] == '\\' && p[1] == 'u') lo = hex4(p + 2);
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            } else {
                cp = 0xFFFD; /* lone high surrogate */
            }
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            cp = 0xFFFD; /* lone low surrogate */
        }
        *n = utf8_encode((unsigned long)cp, buf);
        *pp = p;
        return 1;
    }
    default: return -1;
    }
    *n = 1;
    *pp = p;
    return 1;
}

/* p at an opening quote: the position after the closing quote, or NULL. */
static jp skip_string(jp p, jp end) {
    if (p >= end || *p != '"') return NULL;
    p++;
    uint8_t buf[4];
    size_t n;
    int r;
    while ((r = str_next(&p, end, buf, &n)) == 1) {
    }
    return r == 0 ? p : NULL;
}

/* Whether the string at p (an opening quote, already known well-formed) decodes to want[0..len). */
static bool string_equals(jp p, jp end, const uint8_t *want, size_t want_len) {
    if (p >= end || *p != '"') return false;
    p++;
    uint8_t buf[4];
    size_t n, at = 0;
    int r;
    while ((r = str_next(&p, end, buf, &n)) == 1) {
        if (n > want_len - at || memcmp(want + at, buf, n) != 0) return false;
        at += n;
    }
    return r == 0 && at == want_len;
}

/* A heap copy of the decoded string at p (an opening quote). */
static weir_json_status_t string_dup(jp p, jp end, char **out) {
    jp close = skip_string(p, end);
    if (!close) return WEIR_JSON_INVALID;
    if (!out) return WEIR_JSON_OK;
    /* The decoded form is never longer than the escaped one (quotes included). */
    char *s = malloc((size_t)(close - p));
    if (!s) return WEIR_JSON_NOMEM;
    size_t at = 0, n;
    uint8_t buf[4];
    p++;
    while (str_next(&p, end, buf, &n) == 1) {
        memcpy(s + at, buf, n);
        at += n;
    }
    s[at] = '\0';
    *out = s; /* a \u0000 inside ends the C string early, as documented */
    return WEIR_JSON_OK;
}

static jp skip_digits(jp p, jp end) {
    jp start = p;
    while (p < end && *p >= '0' && *p <= '9') p++;
    return p == start ? NULL : p;
}

static jp skip_number(jp p, jp end) {
    if (p < end && *p == '-') p++;
    if (p >= end) return NULL;
    if (*p == '0') {
        p++;
    } else if (!(p = skip_digits(p, end))) {
        return NULL;
    }
    if (p < end && *p == '.') {
        if (!(p = skip_digits(p + 1, end))) return NULL;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (!(p = skip_digits(p, end))) return NULL;
    }
    return p;
}

static jp skip_literal(jp p, jp end, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(end - p) < n || memcmp(p, lit, n) != 0) return NULL;
    return p + n;
}

static jp skip_value(jp p, jp end, int depth);

static jp skip_object(jp p, jp end, int depth) {
    /* p at '{' */
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}') return p + 1;
    for (;;) {
        if (!(p = skip_string(p, end))) return NULL;
        p = skip_ws(p, end);
        if (p >= end || *p != ':') return NULL;
        if (!(p = skip_value(skip_ws(p + 1, end), end, depth))) return NULL;
        p = skip_ws(p, end);
        if (p >= end) return NULL;
        if (*p == '}') return p + 1;
        if (*p != ',') return NULL;
        p = skip_ws(p + 1, end);
    }
}

static jp skip_array(jp p, jp end, int depth) {
    /* p at '[' */
    p = skip_ws(p + 1, end);
    if (p < end && *p == ']') return p + 1;
    for (;;) {
        if (!(p = skip_value(p, end, depth))) return NULL;
        p = skip_ws(p, end);
        if (p >= end) return NULL;
        if (*p == ']') return p + 1;
        if (*p != ',') return NULL;
        p = skip_ws(p + 1, end);
    }
}

/* p at the first character of a value: the position after it, or NULL. */
static jp skip_value(jp p, jp end, int depth) {
    if (p >= end) return NULL;
    switch (*p) {
    case '{': return depth >= WEIR_JSON_MAX_DEPTH ? NULL : skip_object(p, end, depth + 1);
    case '[': return depth >= WEIR_JSON_MAX_DEPTH ? NULL : skip_array(p, end, depth + 1);
    case '"': return skip_string(p, end);
    case 't': return skip_literal(p, end, "true");
    case 'f': return skip_literal(p, end, "false");
    case 'n': return skip_literal(p, end, "null");
    default: return skip_number(p, end);
    }
}

/* The position just inside the top-level '{' if `json` is exactly one well-formed object. */
static jp object_start(const plugin_string_t *json, jp *end_out) {
    if (!json || (!json->ptr && json->len)) return NULL;
    jp p = json->ptr, end = json->ptr + json->len;
    if (!p) return NULL;
    p = skip_ws(p, end);
    if (p >= end || *p != '{') return NULL;
    jp after = skip_object(p, end, 1);
    if (!after || skip_ws(after, end) != end) return NULL;
    *end_out = end;
    return skip_ws(p + 1, end);
}

bool weir_json_is_object(const plugin_string_t *json) {
    jp end;
    return object_start(json, &end) != NULL;
}

/* Reads one member at p (a key's opening quote, in a validated object): sets the key and value
 * positions and returns the position of the next member (or of the closing '}'). */
static jp member(jp p, jp end, jp *key, jp *value, jp *value_end) {
    *key = p;
    if (!(p = skip_string(p, end))) return NULL;
    p = skip_ws(p, end);
    if (p >= end || *p != ':') return NULL;
    p = skip_ws(p + 1, end);
    *value = p;
    if (!(p = skip_value(p, end, 1))) return NULL;
    *value_end = p;
    p = skip_ws(p, end);
    if (p < end && *p == ',') p = skip_ws(p + 1, end);
    return p;
}

/* Finds the value of `name` at the top level of `json`. */
static weir_json_status_t find(const plugin_string_t *json, const char *name, jp *value,
                               jp *value_end, jp *end_out) {
    jp end;
    jp p = object_start(json, &end);
    if (!p) return WEIR_JSON_INVALID;
    *end_out = end;
    if (!name) return WEIR_JSON_MISSING;
    size_t name_len = strlen(name);
    while (p < end && *p != '}') {
        jp key, v, ve;
        if (!(p = member(p, end, &key, &v, &ve))) return WEIR_JSON_INVALID;
        if (string_equals(key, end, (const uint8_t *)name, name_len)) {
            *value = v;
            *value_end = ve;
            return WEIR_JSON_OK;
        }
    }
    return WEIR_JSON_MISSING;
}

weir_json_status_t weir_json_string(const plugin_string_t *json, const char *key, char **out) {
    if (out) *out = NULL;
    jp v, ve, end;
    weir_json_status_t st = find(json, key, &v, &ve, &end);
    if (st != WEIR_JSON_OK) return st;
    if (*v != '"') return WEIR_JSON_TYPE;
    return string_dup(v, end, out);
}

weir_json_status_t weir_json_bool(const plugin_string_t *json, const char *key, bool *out) {
    jp v, ve, end;
    weir_json_status_t st = find(json, key, &v, &ve, &end);
    if (st != WEIR_JSON_OK) return st;
    if (*v == 't') {
        if (out) *out = true;
    } else if (*v == 'f') {
        if (out) *out = false;
    } else {
        return WEIR_JSON_TYPE;
    }
    return WEIR_JSON_OK;
}

static bool is_number_start(uint8_t c) { return c == '-' || (c >= '0' && c <= '9'); }

weir_json_status_t weir_json_number(const plugin_string_t *json, const char *key, double *out) {
    jp v, ve, end;
    weir_json_status_t st = find(json, key, &v, &ve, &end);
    if (st != WEIR_JSON_OK) return st;
    if (!is_number_start(*v)) return WEIR_JSON_TYPE;
    char *text = copy_cstr(v, (size_t)(ve - v)); /* strtod needs a NUL-terminated string */
    if (!text) return WEIR_JSON_NOMEM;
    double d = strtod(text, NULL);
    free(text);
    if (out) *out = d;
    return WEIR_JSON_OK;
}

weir_json_status_t weir_json_int(const plugin_string_t *json, const char *key, int64_t *out) {
    jp v, ve, end;
    weir_json_status_t st = find(json, key, &v, &ve, &end);
    if (st != WEIR_JSON_OK) return st;
    if (!is_number_start(*v)) return WEIR_JSON_TYPE;
    jp p = v;
    bool negative = *p == '-';
    if (negative) p++;
    /* Accumulate as a negative number: its range includes INT64_MIN. */
    int64_t acc = 0;
    for (; p < ve; p++) {
        if (*p < '0' || *p > '9') return WEIR_JSON_TYPE; /* fraction or exponent */
        int digit = *p - '0';
        if (acc < (INT64_MIN + digit) / 10) return WEIR_JSON_TYPE; /* overflow */
        acc = acc * 10 - digit;
    }
    if (!negative) {
        if (acc == INT64_MIN) return WEIR_JSON_TYPE;
        acc = -acc;
    }
    if (out) *out = acc;
    return WEIR_JSON_OK;
}

/* Walks the array at `key`: calls `visit` for each element until it returns false. */
typedef bool (*element_fn)(jp value, jp end, size_t index, void *state);

static weir_json_status_t each_element(const plugin_string_t *json, const char *key,
                                       element_fn visit, void *state) {
    jp v, ve, end;
    weir_json_status_t st = find(json, key, &v, &ve, &end);
    if (st != WEIR_JSON_OK) return st;
    if (*v != '[') return WEIR_JSON_TYPE;
    jp p = skip_ws(v + 1, ve);
    size_t index = 0;
    while (p < ve && *p != ']') {
        jp e = p;
        if (!(p = skip_value(p, ve, 1))) return WEIR_JSON_INVALID;
        if (!visit(e, ve, index++, state)) return WEIR_JSON_OK;
        p = skip_ws(p, ve);
        if (p < ve && *p == ',') p = skip_ws(p + 1, ve);
    }
    return WEIR_JSON_OK;
}

static bool count_element(jp value, jp end, size_t index, void *state) {
    (void)value;
    (void)end;
    *(size_t *)state = index + 1;
    return true;
}

weir_json_status_t weir_json_array_len(const plugin_string_t *json, const char *key, size_t *len) {
    size_t n = 0;
    weir_json_status_t st = each_element(json, key, count_element, &n);
    if (st == WEIR_JSON_OK && len) *len = n;
    return st;
}

struct nth {
    size_t want;
    jp found;
};

static bool find_nth(jp value, jp end, size_t index, void *state) {
    (void)end;
    struct nth *s = state;
    if (index != s->want) return true;
    s->found = value;
    return false;
}

weir_json_status_t weir_json_array_string(const plugin_string_t *json, const char *key,
                                          size_t index, char **out) {
    if (out) *out = NULL;
    struct nth s = {index, NULL};
    weir_json_status_t st = each_element(json, key, find_nth, &s);
    if (st != WEIR_JSON_OK) return st;
    if (!s.found) return WEIR_JSON_MISSING;
    if (*s.found != '"') return WEIR_JSON_TYPE;
    return string_dup(s.found, json->ptr + json->len, out);
}

struct contains {
    const uint8_t *want;
    size_t want_len;
    bool found;
};

static bool match_element(jp value, jp end, size_t index, void *state) {
    (void)index;
    struct contains *s = state;
    if (*value == '"' && string_equals(value, end, s->want, s->want_len)) {
        s->found = true;
        return false;
    }
    return true;
}

bool weir_json_array_contains(const plugin_string_t *json, const char *key, const char *value) {
    if (!value) return false;
    struct contains s = {(const uint8_t *)value, strlen(value), false};
    return each_element(json, key, match_element, &s) == WEIR_JSON_OK && s.found;
}

weir_json_status_t weir_json_object(const plugin_string_t *json, const char *key,
                                    plugin_string_t *out) {
    jp v, ve, end;
    weir_json_status_t st = find(json, key, &v, &ve, &end);
    if (st != WEIR_JSON_OK) return st;
    if (*v != '{') return WEIR_JSON_TYPE;
    if (out) {
        out->ptr = (uint8_t *)v;
        out->len = (size_t)(ve - v);
    }
    return WEIR_JSON_OK;
}

weir_json_status_t weir_json_next_key(const plugin_string_t *json, size_t *cursor, char **key) {
    if (key) *key = NULL;
    jp end;
    jp p;
    if (*cursor == 0) {
        /* Validate once, at the start of the iteration. */
        if (!(p = object_start(json, &end))) return WEIR_JSON_INVALID;
    } else {
        if (!json || !json->ptr || *cursor > json->len) return WEIR_JSON_INVALID;
        end = json->ptr + json->len;
        p = json->ptr + *cursor;
    }
    if (p >= end || *p == '}') return WEIR_JSON_MISSING;
    jp k, v, ve;
    jp next = member(p, end, &k, &v, &ve);
    if (!next) return WEIR_JSON_INVALID;
    weir_json_status_t st = string_dup(k, end, key);
    if (st != WEIR_JSON_OK) return st;
    *cursor = (size_t)(next - json->ptr);
    return WEIR_JSON_OK;
}

weir_json_status_t weir_json_unknown_key(const plugin_string_t *json, const char *const *known,
                                         char **unknown) {
    if (unknown) *unknown = NULL;
    jp end;
    jp p = object_start(json, &end);
    if (!p) return WEIR_JSON_INVALID;
    while (p < end && *p != '}') {
        jp k, v, ve;
        if (!(p = member(p, end, &k, &v, &ve))) return WEIR_JSON_INVALID;
        bool found = false;
        for (const char *const *name = known; name && *name && !found; name++) {
            found = string_equals(k, end, (const uint8_t *)*name, strlen(*name));
        }
        if (!found) return string_dup(k, end, unknown);
    }
    return WEIR_JSON_MISSING;
}
