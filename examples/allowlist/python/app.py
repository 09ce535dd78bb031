"""`allowlist` in Python: see ../README.md for the behaviour, identical in every language."""

import weir
from weir import context, request, response
from wit_world.imports import kv

KNOWN = {"header", "allow", "tag", "upper_body", "count"}


class WitWorld(weir.Plugin):
    response_hook = True

    def configure(self, config):
        for key in config:
            if key not in KNOWN:
                raise ValueError(f'unknown config key "{key}"')
        self.header = config.get("header", "x-user")
        self.allow = config.get("allow", [])
        if not self.allow:
            raise ValueError("`allow` must not be empty")
        self.tag = config.get("tag", "python")
        self.upper_body = bool(config.get("upper_body", False))
        self.count = bool(config.get("count", False))
        if self.upper_body:
            self.request_body = weir.buffered(64 * 1024)

    def on_request(self):
        if request.header("x-trap") is not None:
            raise RuntimeError("allowlist trap requested")
        user = request.header(self.header)
        if user is None or user not in self.allow:
            return weir.respond(403, "denied", [("x-denied-by", self.tag)])
        request.set_header("x-allowed-user", user)
        context.set_principal(user)
        if self.count:
            seen = kv.increment("seen:" + user, 1, None)
            request.set_header("x-seen", str(seen))
        if self.upper_body:
            body = request.body() or b""
            request.set_body(body.upper())
        return weir.CONTINUE

    def on_response(self):
        response.set_header("x-policy", self.tag)
        return weir.RESPONSE_CONTINUE
