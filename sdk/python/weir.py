"""Write Weir gateway plugins in Python.

A plugin is one module (``app.py``) defining ``class WitWorld(weir.Plugin)`` -- componentize-py
looks for that name -- that overrides the hooks it needs::

    import weir
    from weir import request

    class WitWorld(weir.Plugin):
        def configure(self, config):
            self.header = config.get("header", "x-user")

        def on_request(self):
            if request.header(self.header) is None:
                return weir.respond(401, "missing " + self.header)
            return weir.CONTINUE

``weir plugin build`` turns the directory into a component (it runs componentize-py with the
WIT world trimmed to the capabilities ``weir-plugin.toml`` declares). The contract is
``wit/plugin.wit``; this module only makes it pleasant:

- ``configure(config)`` gets the chain entry's ``config`` table as a ``dict``; raise any exception
  to refuse it (its message is reported with the route and plugin at load time).
- Class attributes ``response_hook``, ``request_body`` and ``response_body`` are the
  ``plugin-info`` (``weir.NONE``, ``weir.buffered(limit)`` or ``weir.STREAMED``).
- Decisions: ``weir.CONTINUE``, ``weir.respond(status, body, headers)``, ``weir.route(name)`` for
  requests; ``weir.RESPONSE_CONTINUE`` and ``weir.replace(status, body, headers)`` for responses.
- ``request``, ``response``, ``context`` and ``log`` are the host interfaces; capabilities the
  plugin declared are importable as ``from wit_world.imports import kv`` (or ``outbound``,
  ``metrics``, ``secrets``).

An exception escaping a hook is a trap: the gateway applies the route's ``on_error`` and logs the
traceback with the plugin's name.
"""

import json
from typing import Iterable, Tuple, Union

import wit_world
from componentize_py_types import Err
from wit_world.imports import context, log, request, response, types

__all__ = [
    "Plugin", "CONTINUE", "RESPONSE_CONTINUE", "NONE", "STREAMED", "buffered", "respond",
    "route", "replace", "request", "response", "context", "log", "types",
]

Headers = Iterable[Tuple[str, str]]
Body = Union[bytes, str]

NONE = types.BodyAccess_None_()
STREAMED = types.BodyAccess_Streamed()
CONTINUE = types.RequestDecision_Continue()
RESPONSE_CONTINUE = types.ResponseDecision_Continue()


def buffered(limit: int) -> types.BodyAccess:
    """Body access: read the whole body, up to ``limit`` bytes, before the hook runs."""
    return types.BodyAccess_Buffered(limit)


def _local(status: int, body: Body, headers: Headers) -> types.LocalResponse:
    headers = [(k.lower(), v) for k, v in headers]
    if isinstance(body, str):
        body = body.encode()
        if not any(k == "content-type" for k, _ in headers):
            headers.append(("content-type", "text/plain; charset=utf-8"))
    return types.LocalResponse(status=status, headers=headers, body=body)


def respond(status: int, body: Body = b"", headers: Headers = ()) -> types.RequestDecision:
    """Answer now; the rest of the chain and the upstream are skipped. A ``str`` body is sent as
    UTF-8 text/plain unless ``headers`` set a content type."""
    return types.RequestDecision_Respond(_local(status, body, headers))


def route(upstream: str) -> types.RequestDecision:
    """Send the request to this named upstream instead of the route's."""
    return types.RequestDecision_Route(upstream)


def replace(status: int, body: Body = b"", headers: Headers = ()) -> types.ResponseDecision:
    """Replace the response entirely."""
    return types.ResponseDecision_Replace(_local(status, body, headers))


_SINGLETONS: dict = {}


class Plugin(wit_world.WitWorld):
    """Base class of a plugin. One object lives per instance; depending on the operator's
    instance policy it serves one request or many (one at a time), so never rely on state
    surviving between requests, nor on it being absent.

    componentize-py constructs ``WitWorld()`` for every call into the component; the base class
    makes that the same object every time, so what ``configure`` stores on ``self`` is there in
    the hooks. Set state up in ``configure``, not in ``__init__``."""

    def __new__(cls, *args, **kwargs):
        instance = _SINGLETONS.get(cls)
        if instance is None:
            instance = super().__new__(cls)
            _SINGLETONS[cls] = instance
        return instance

    response_hook = False
    request_body = NONE
    response_body = NONE

    def configure(self, config: dict) -> None:
        """Check and keep the chain entry's config; raise to refuse it."""

    def on_request(self) -> types.RequestDecision:
        return CONTINUE

    def on_response(self) -> types.ResponseDecision:
        return RESPONSE_CONTINUE

    def on_body_chunk(self, direction: types.Direction, chunk: bytes) -> bytes:
        return chunk

    def on_body_end(self, direction: types.Direction) -> types.BodyEnd:
        return types.BodyEnd(tail=b"", trailers=[])

    # The WIT export; plugins override `configure` instead.
    def init(self, config: str) -> types.PluginInfo:
        try:
            parsed = json.loads(config)
            self.configure(parsed)
        except Exception as e:  # any reason to refuse the config, reported at load time
            raise Err(f"{e}")
        return types.PluginInfo(
            response_hook=bool(self.response_hook),
            request_body=self.request_body,
            response_body=self.response_body,
        )
