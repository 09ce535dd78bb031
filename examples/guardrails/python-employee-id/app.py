"""`employee-id`: a custom guardrail in Python. Blocks requests whose body contains a company
employee id (`ACME-` and exactly six digits) and writes an audit record; meant to run after the
built-in `guardrails` plugin. See README.md. Build with `weir plugin build .`, smoke-test with
`weir plugin test .`."""

import json
import re

import weir
from weir import context, log, request

# The name the audit record and the error message give this detector. Never the matched value:
# the error goes back to the client and the audit record to a log many people read.
DETECTOR = "employee-id"
PLUGIN = "employee-id"  # `name` in weir-plugin.toml
MESSAGE = f"request blocked by guardrail: detector '{DETECTOR}' found a company employee id"

# The chain buffers request bodies up to the largest limit any of its plugins declares, before
# the first plugin runs; a larger body is answered 413. 1 MiB holds any chat prompt of text.
MAX_BODY = 1024 * 1024


def strings(value):
    """Every string in a decoded JSON value, object keys included. Iterative, so a deeply nested
    body cannot exhaust Python's recursion limit in here."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            yield v
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def error_body(path):
    """The refusal in the format the client's SDK reads, chosen by the API path (the query is
    not part of it): OpenAI's for chat completions, Anthropic's for messages, otherwise the
    gateway's own JSON error shape."""
    path = path.split("?", 1)[0]
    if path.endswith("/chat/completions"):
        return {
            "error": {
                "message": MESSAGE,
                "type": "invalid_request_error",
                "param": None,
                "code": "guardrail_blocked",
            }
        }
    if path.endswith("/v1/messages"):
        return {"type": "error", "error": {"type": "invalid_request_error", "message": MESSAGE}}
    return {"error": {"status": 400, "message": MESSAGE}}


class WitWorld(weir.Plugin):
    request_body = weir.buffered(MAX_BODY)

    def configure(self, config):
        # Refuse what we do not understand: a misspelt key fails `weir check`, it does not
        # silently leave the default in force.
        for key in config:
            if key != "prefix":
                raise ValueError(f'unknown config key "{key}"')
        prefix = config.get("prefix", "ACME")
        if not isinstance(prefix, str) or not prefix:
            raise ValueError("`prefix` must be a non-empty string")
        # Word-bounded on both sides, so `ACME-1234567` (seven digits) or `XACME-123456` are not
        # ids. re.ASCII: `\b` then means what it means in JavaScript, whatever the text's script.
        self.pattern = re.compile(rf"\b{re.escape(prefix)}-[0-9]{{6}}\b", re.ASCII)

    def found(self, body):
        # Decoded JSON, not raw bytes: `ACME-\u0031\u0032...` spells the same id in JSON and
        # must not slip through. A body that is not JSON is scanned as text.
        try:
            texts = strings(json.loads(body))
        except (ValueError, RecursionError):
            texts = [body.decode("utf-8", errors="replace")]
        return any(self.pattern.search(t) for t in texts)

    def on_request(self):
        body = request.body() or b""
        if not self.found(body):
            return weir.CONTINUE
        record = {
            "detector": DETECTOR,
            "action": "block",
            "direction": "request",
            "plugin": PLUGIN,
            "principal": context.principal(),
        }
        # `<name>-audit {json}` is an audit record: the gateway writes it to the audit log too.
        log.log(log.Level.INFO, "guardrail-audit " + json.dumps(record, separators=(",", ":")))
        body = json.dumps(error_body(request.path()), separators=(",", ":"))
        return weir.respond(400, body, [("content-type", "application/json")])
