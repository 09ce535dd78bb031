"""The fixture ("everything") server for the official MCP conformance suite, on the real Python `mcp` SDK.

    python3 mcp_conformance_server.py --port P

serves Streamable HTTP at http://127.0.0.1:P/mcp (sessions, handshake era; the SDK also answers the
modern era) with every tool, resource, prompt and handler that the server scenarios of
`@modelcontextprotocol/conformance` ask for: test_simple_text, test_image_content, test_audio_content,
test_embedded_resource, test_multiple_content_types, test_tool_with_logging, test_error_handling,
test_tool_with_progress, test_sampling, test_elicitation, test_elicitation_sep1034_defaults,
test_elicitation_sep1330_enums, test_reconnection, json_schema_2020_12_tool; test://static-text,
test://static-binary, test://template/{id}/data, test://watched-resource; test_simple_prompt,
test_prompt_with_arguments, test_prompt_with_embedded_resource, test_prompt_with_image; completion,
logging/setLevel, resources/subscribe and resources/unsubscribe.

An in-memory event store makes streams resumable (SEP-1699): each POST SSE stream opens with a priming
event (an id, empty data and `retry: 100`); `test_reconnection` closes its stream mid-call with
`Context.close_sse_stream()` and the result is replayed on a GET carrying Last-Event-ID.
A request whose MCP-Protocol-Version header is older than what its session negotiated at
initialize is served as the negotiated version (see `version_upgrading`; `--literal-version-header`
turns this off), because the suite's server-sse-polling client sends 2025-03-26 on its raw requests
and the SDK would otherwise neither prime nor close that stream.
DNS rebinding protection is on: Host must be 127.0.0.1, localhost or [::1] (any port), and so must
Origin when one is sent.

It prints `listening on 127.0.0.1:P` (flushed) once the socket accepts connections, and exits with
status 0 on SIGTERM or SIGINT.
"""

import argparse
import asyncio
import base64
import json
import signal
import sys
import warnings

import uvicorn
from mcp import types
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp.server.transport_security import TransportSecuritySettings

from mcp_server import buffered  # the sibling peer: one request-body replay

# Logging, sampling and friends are deprecated as of 2026-07-28 but are exactly what the
# 2025-era scenarios exercise.
warnings.filterwarnings("ignore", category=DeprecationWarning)
try:
    from mcp.shared.exceptions import MCPDeprecationWarning  # type: ignore

    warnings.filterwarnings("ignore", category=MCPDeprecationWarning)
except ImportError:  # pragma: no cover
    pass

# 1x1 PNG and an empty WAV.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="
RETRY_MS = 100


class MemoryEventStore(EventStore):
    """Every event of every stream, in order; replays a stream's events after a given id."""

    def __init__(self):
        self.events = []  # (stream_id, event_id, message or None for priming events)
        self.counter = 0

    async def store_event(self, stream_id, message):
        self.counter += 1
        event_id = str(self.counter)
        self.events.append((stream_id, event_id, message))
        return event_id

    async def replay_events_after(self, last_event_id, send_callback: EventCallback):
        stream = next((s for s, e, _ in self.events if e == last_event_id), None)
        if stream is None:
            return None
        after = int(last_event_id)
        for s, e, message in list(self.events):
            if s == stream and int(e) > after and message is not None:
                await send_callback(EventMessage(message, e))
        return stream


def version_upgrading(app):
    """ASGI middleware: a request in a session that negotiated 2025-11-25 but whose
    MCP-Protocol-Version header names an older version gets the negotiated version instead.

    The SDK decides per request, from that header, whether to open a POST SSE stream with a
    priming event and whether `close_sse_stream` may cut it (only at >= 2025-11-25, as older
    clients cannot resume). The suite's server-sse-polling scenario initializes at 2025-11-25,
    then sends its raw POST tools/call and GET resume with `mcp-protocol-version: 2025-03-26`;
    left alone, the SDK then sends no priming event and never closes the stream, so the
    scenario ends in two warnings and never exercises resumption.
    """
    negotiated = {}  # session id -> protocol version from the initialize request

    async def wrapped(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        headers = [(k.lower(), v) for k, v in scope["headers"]]
        session = next((v.decode() for k, v in headers if k == b"mcp-session-id"), None)
        if session is not None:
            version = negotiated.get(session)
            claimed = next((v.decode() for k, v in headers if k == b"mcp-protocol-version"), None)
            if version and claimed and claimed < version:
                headers = [(k, v) for k, v in headers if k != b"mcp-protocol-version"]
                headers.append((b"mcp-protocol-version", version.encode()))
                scope = dict(scope, headers=headers)
            return await app(scope, receive, send)
        if scope["method"] != "POST":
            return await app(scope, receive, send)
        body, replay = await buffered(receive)
        try:
            msg = json.loads(body)
            version = msg["params"]["protocolVersion"] if msg.get("method") == "initialize" else None
        except (ValueError, KeyError, TypeError, AttributeError):
            version = None

        async def capture(message):
            if version and message["type"] == "http.response.start":
                for k, v in message.get("headers", []):
                    if k.lower() == b"mcp-session-id":
                        negotiated[v.decode()] = str(version)
            await send(message)

        return await app(scope, replay, capture)

    return wrapped


def build(upgrade=True):
    mcp = MCPServer("weir-conformance-fixture", version="1.0.0", log_level="WARNING")
    subscriptions = set()

    # ---- tools ----

    @mcp.tool()
    def test_simple_text() -> str:
        """Returns simple text content."""
        return "This is a simple text response for testing."

    @mcp.tool()
    def test_image_content() -> list[types.ImageContent]:
        """Returns image content."""
        return [types.ImageContent(type="image", data=PNG, mime_type="image/png")]

    @mcp.tool()
    def test_audio_content() -> list[types.AudioContent]:
        """Returns audio content."""
        return [types.AudioContent(type="audio", data=WAV, mime_type="audio/wav")]

    @mcp.tool()
    def test_embedded_resource() -> list[types.EmbeddedResource]:
        """Returns an embedded resource."""
        return [
            types.EmbeddedResource(
                type="resource",
                resource=types.TextResourceContents(
                    uri="test://embedded-resource",
                    mime_type="text/plain",
                    text="This is an embedded resource content.",
                ),
            )
        ]

    @mcp.tool()
    def test_multiple_content_types() -> list[types.TextContent | types.ImageContent | types.EmbeddedResource]:
        """Returns text, image and resource content."""
        return [
            types.TextContent(type="text", text="Multiple content types test:"),
            types.ImageContent(type="image", data=PNG, mime_type="image/png"),
            types.EmbeddedResource(
                type="resource",
                resource=types.TextResourceContents(
                    uri="test://mixed-content-resource",
                    mime_type="application/json",
                    text=json.dumps({"test": "data", "value": 123}),
                ),
            ),
        ]

    @mcp.tool()
    async def test_tool_with_logging(ctx: Context) -> str:
        """Sends three info log notifications while it runs."""
        await ctx.info("Tool execution started")
        await asyncio.sleep(0.05)
        await ctx.info("Tool processing data")
        await asyncio.sleep(0.05)
        await ctx.info("Tool execution completed")
        return "Tool with logging executed successfully"

    @mcp.tool()
    def test_error_handling() -> str:
        """Always fails."""
        raise ToolError("This tool intentionally returns an error for testing")

    @mcp.tool()
    async def test_tool_with_progress(ctx: Context) -> str:
        """Reports progress 0, 50 and 100 of 100, 50 ms apart."""
        await ctx.report_progress(0, 100, "Completed step 0 of 100")
        await asyncio.sleep(0.05)
        await ctx.report_progress(50, 100, "Completed step 50 of 100")
        await asyncio.sleep(0.05)
        await ctx.report_progress(100, 100, "Completed step 100 of 100")
        return "Progress tool completed"

    @mcp.tool()
    async def test_sampling(prompt: str, ctx: Context) -> str:
        """Asks the client's LLM (sampling/createMessage) and returns its answer."""
        result = await ctx.session.create_message(
            messages=[types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))],
            max_tokens=100,
            related_request_id=ctx.request_id,
        )
        content = result.content
        text = content.text if getattr(content, "type", None) == "text" else str(content)
        return f"LLM response: {text}"

    async def elicit(ctx, message, schema):
        result = await ctx.session.elicit_form(
            message=message, requested_schema=schema, related_request_id=ctx.request_id
        )
        return result.action, json.dumps(result.content or {})

    @mcp.tool()
    async def test_elicitation(message: str, ctx: Context) -> str:
        """Asks the user (elicitation/create) for a username and an email."""
        action, content = await elicit(
            ctx,
            message,
            {
                "type": "object",
                "properties": {
                    "username": {"type": "string", "description": "User's response"},
                    "email": {"type": "string", "description": "User's email address"},
                },
                "required": ["username", "email"],
            },
        )
        return f"User response: action={action}, content={content}"

    @mcp.tool()
    async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
        """Elicits with a default for every primitive type (SEP-1034)."""
        action, content = await elicit(
            ctx,
            "Please provide user information",
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "User name", "default": "John Doe"},
                    "age": {"type": "integer", "description": "User age", "default": 30},
                    "score": {"type": "number", "description": "User score", "default": 95.5},
                    "status": {
                        "type": "string",
                        "description": "User status",
                        "enum": ["active", "inactive", "pending"],
                        "default": "active",
                    },
                    "verified": {"type": "boolean", "description": "Verification status", "default": True},
                },
            },
        )
        return f"Elicitation completed: action={action}, content={content}"

    @mcp.tool()
    async def test_elicitation_sep1330_enums(ctx: Context) -> str:
        """Elicits with all five enum schema variants (SEP-1330)."""
        action, content = await elicit(
            ctx,
            "Please select values using different enum schema types",
            {
                "type": "object",
                "properties": {
                    "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
                    "titledSingle": {
                        "type": "string",
                        "oneOf": [
                            {"const": "value1", "title": "First Option"},
                            {"const": "value2", "title": "Second Option"},
                            {"const": "value3", "title": "Third Option"},
                        ],
                    },
                    "legacyEnum": {
                        "type": "string",
                        "enum": ["opt1", "opt2", "opt3"],
                        "enumNames": ["Option One", "Option Two", "Option Three"],
                    },
                    "untitledMulti": {
                        "type": "array",
                        "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
                    },
                    "titledMulti": {
                        "type": "array",
                        "items": {
                            "anyOf": [
                                {"const": "value1", "title": "First Choice"},
                                {"const": "value2", "title": "Second Choice"},
                                {"const": "value3", "title": "Third Choice"},
                            ]
                        },
                    },
                },
            },
        )
        return f"Elicitation completed: action={action}, content={content}"

    @mcp.tool()
    async def test_reconnection(ctx: Context) -> str:
        """Closes its SSE stream mid-call; the result arrives on the resumed stream (SEP-1699)."""
        await ctx.info("Before disconnect")
        await ctx.close_sse_stream()
        await asyncio.sleep(0.2)  # the client reconnects after `retry` ms
        await ctx.info("After reconnect")
        return "Reconnection test completed"

    @mcp.tool(name="json_schema_2020_12_tool", description="Tool with JSON Schema 2020-12 features")
    def json_schema_2020_12_tool(name: str | None = None, address: dict | None = None) -> str:
        return f"name={name}, address={address}"

    # Advertise the schema verbatim ($schema, $defs, additionalProperties), not the derived one.
    mcp._tool_manager.get_tool("json_schema_2020_12_tool").parameters = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "type": "object",
                "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
            }
        },
        "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
        "additionalProperties": False,
    }

    # ---- resources ----

    @mcp.resource("test://static-text", name="static-text", mime_type="text/plain")
    def static_text() -> str:
        """A static text resource."""
        return "This is the content of the static text resource."

    @mcp.resource("test://static-binary", name="static-binary", mime_type="image/png")
    def static_binary() -> bytes:
        """A static binary resource (a PNG)."""
        return base64.b64decode(PNG)

    @mcp.resource("test://template/{id}/data", name="template", mime_type="application/json")
    def template(id: str) -> str:
        """A resource template with parameter substitution."""
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    @mcp.resource("test://watched-resource", name="watched-resource", mime_type="text/plain")
    def watched() -> str:
        """A resource that can be subscribed to."""
        return "Watched resource content"

    # ---- prompts ----

    @mcp.prompt()
    def test_simple_prompt() -> list[UserMessage]:
        """A simple prompt without arguments."""
        return [UserMessage(content=types.TextContent(type="text", text="This is a simple prompt for testing."))]

    @mcp.prompt()
    def test_prompt_with_arguments(arg1: str, arg2: str) -> list[UserMessage]:
        """A prompt with two required arguments."""
        text = f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
        return [UserMessage(content=types.TextContent(type="text", text=text))]

    @mcp.prompt()
    def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:  # noqa: N803
        """A prompt that embeds a resource."""
        return [
            UserMessage(
                content=types.EmbeddedResource(
                    type="resource",
                    resource=types.TextResourceContents(
                        uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."
                    ),
                )
            ),
            UserMessage(content=types.TextContent(type="text", text="Please process the embedded resource above.")),
        ]

    @mcp.prompt()
    def test_prompt_with_image() -> list[UserMessage]:
        """A prompt that includes an image."""
        return [
            UserMessage(content=types.ImageContent(type="image", data=PNG, mime_type="image/png")),
            UserMessage(content=types.TextContent(type="text", text="Please analyze the image above.")),
        ]

    # ---- completion, logging, subscriptions ----

    @mcp.completion()
    async def complete(ref, argument, context):
        return types.Completion(values=[], total=0, has_more=False)

    async def set_level(ctx, params):
        return types.EmptyResult()

    async def subscribe(ctx, params):
        subscriptions.add(str(params.uri))
        return types.EmptyResult()

    async def unsubscribe(ctx, params):
        subscriptions.discard(str(params.uri))
        return types.EmptyResult()

    low = mcp._lowlevel_server
    low.add_request_handler("logging/setLevel", types.SetLevelRequestParams, set_level)
    low.add_request_handler("resources/subscribe", types.SubscribeRequestParams, subscribe)
    low.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, unsubscribe)

    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
    )
    app = mcp.streamable_http_app(
        event_store=MemoryEventStore(), retry_interval=RETRY_MS, transport_security=security
    )
    return version_upgrading(app) if upgrade else app


async def serve(port, upgrade):
    config = uvicorn.Config(
        build(upgrade), host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            await task
            sys.exit("server failed to start")
        await asyncio.sleep(0.02)
    print(f"listening on 127.0.0.1:{port}", flush=True)
    await task


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument(
        "--literal-version-header",
        action="store_true",
        help="trust each request's MCP-Protocol-Version header as sent (no upgrade to the negotiated version)",
    )
    a = p.parse_args()
    # uvicorn handles SIGTERM/SIGINT itself (graceful shutdown), then re-raises the signal once it
    # has restored the previous handlers; these no-ops make that re-raise a clean exit(0).
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    asyncio.run(serve(a.port, not a.literal_version_header))


if __name__ == "__main__":
    main()
