"""An MCP server for the gateway tests, built on the real Python `mcp` SDK (dual-era).

    python3 mcp_server.py --port P --log FILE            # MCPServer: tools, a resource, progress
    python3 mcp_server.py --port P --log FILE --paged N  # low-level Server: N+1 tools, 10 per page
    python3 mcp_server.py --port P --log FILE --modern-only  # refuses the legacy era

Every POST it receives is appended to FILE as one JSON line (`method`, `name`, `id`,
`request_id` (of a cancellation), `authorization`, `session`, `version`, `mcp_method`,
`mcp_name`), so tests can assert what did, and did not, reach the upstream.
"""

import argparse
import asyncio
import json

import uvicorn
from mcp import types
from mcp.server import MCPServer
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import Context

PAGE = 10


async def buffered(receive):
    """Reads the whole request body; returns it and a `receive` that replays it to the app."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message)
        if message["type"] != "http.request" or not message.get("more_body"):
            break
    pending = iter(chunks)

    async def replay():
        try:
            return next(pending)
        except StopIteration:
            return await receive()

    return b"".join(m.get("body", b"") for m in chunks), replay


def recording(app, log_path):
    """ASGI middleware: logs each POSTed JSON-RPC message, then replays the body to `app`."""

    async def wrapped(scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await app(scope, receive, send)
        body, replay = await buffered(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        try:
            msg = json.loads(body)
            params = msg.get("params") or {} if isinstance(msg, dict) else {}
            entry = {
                "method": msg.get("method") if isinstance(msg, dict) else "<batch>",
                "name": params.get("name") if isinstance(params, dict) else None,
                "id": msg.get("id") if isinstance(msg, dict) else None,
                "request_id": params.get("requestId") if isinstance(params, dict) else None,
            }
        except ValueError:
            entry = {"method": "<malformed>", "name": None}
        entry["authorization"] = headers.get("authorization")
        entry["session"] = headers.get("mcp-session-id")
        entry["version"] = headers.get("mcp-protocol-version")
        entry["mcp_method"] = headers.get("mcp-method")
        entry["mcp_name"] = headers.get("mcp-name")
        with open(log_path, "a") as f:
            f.write(json.dumps(entry) + "\n")
        return await app(scope, replay, send)

    return wrapped


def tool_server():
    mcp = MCPServer("py", instructions="Python test server")

    @mcp.tool()
    def add(a: int, b: int) -> int:
        """Adds two integers."""
        return a + b

    @mcp.tool()
    def read_file(path: str) -> str:
        """Pretends to read a file."""
        return f"contents of {path}"

    @mcp.tool()
    def pay(amount: float) -> str:
        """Pretends to pay."""
        return f"paid {amount}"

    @mcp.tool()
    def whoami(ctx: Context) -> str:
        """The authorization header this server received."""
        headers = ctx.headers or {}
        return str(headers.get("authorization"))

    @mcp.tool()
    async def slow(steps: int, ctx: Context) -> str:
        """Reports progress `steps` times, 100 ms apart, then answers."""
        for i in range(steps):
            await ctx.report_progress(i + 1, steps, f"step {i + 1}")
            await asyncio.sleep(0.1)
        return f"done after {steps} steps"

    @mcp.tool()
    async def confirm(action: str, ctx: Context) -> str:
        """Asks the client to confirm: by multi-round-trip (`input_required`) in 2026-07-28,
        by an `elicitation/create` request in a legacy session."""
        if ctx.protocol_version != "2026-07-28":
            answer = await ctx.session.elicit_form(
                f"Allow {action}?",
                requested_schema={"type": "object", "properties": {"ok": {"type": "boolean"}}},
                related_request_id=ctx.request_id,
            )
            return f"{action}: {answer.action} (asked in the session)"
        responses = ctx.input_responses
        if not responses:
            return types.InputRequiredResult(
                inputRequests={
                    "ok": types.ElicitRequest(
                        params=types.ElicitRequestFormParams(
                            message=f"Allow {action}?",
                            requestedSchema={"type": "object", "properties": {"ok": {"type": "boolean"}}},
                        )
                    )
                },
                requestState=f"asked:{action}",
            )
        answer = responses["ok"]
        action_taken = getattr(answer, "action", None) or answer.get("action")
        return f"{action}: {action_taken} (state {ctx.request_state})"

    @mcp.tool()
    async def grow(ctx: Context) -> str:
        """Adds the tool `grown` and says so: on the session's standalone stream (legacy), to
        `subscriptions/listen` streams (2026-07-28)."""
        mcp.add_tool(lambda: "grown", name="grown", description="Added at run time.")
        if ctx.protocol_version == "2026-07-28":
            await ctx.notify_tools_changed()  # to `subscriptions/listen` streams
        else:
            await ctx.session.send_tool_list_changed()
        return "grew"

    @mcp.resource("data://greeting", mime_type="text/plain")
    def greeting() -> str:
        return "hello from py"

    return mcp.streamable_http_app()


def paged_server(count):
    # Plus one name too long for LLM providers once prefixed (64 characters at most).
    names = [f"t{i:03}" for i in range(count)] + ["a_tool_with_a_deliberately_long_name_" + "x" * 40]

    async def list_tools(ctx, params):
        start = int(params.cursor) if params and params.cursor else 0
        page = names[start : start + PAGE]
        tools = [
            types.Tool(name=n, description=f"tool {n}", input_schema={"type": "object"})
            for n in page
        ]
        nxt = str(start + PAGE) if start + PAGE < len(names) else None
        return types.ListToolsResult(tools=tools, next_cursor=nxt)

    async def call_tool(ctx, params):
        return types.CallToolResult(content=[types.TextContent(type="text", text=f"ran {params.name}")])

    server = Server("paged", on_list_tools=list_tools, on_call_tool=call_tool)
    return server.streamable_http_app()


def modern_only(app):
    """ASGI middleware: the server as a 2026-07-28-only server answers the legacy era (the SDK
    serves both): `initialize` gets 400 with -32022 UnsupportedProtocolVersion, GET and DELETE
    get 405. Everything modern goes to the SDK as it is."""

    async def wrapped(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)

        async def answer(status, body=b""):
            headers = [(b"content-type", b"application/json")] if body else []
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        if scope["method"] in ("GET", "DELETE"):
            return await answer(405)
        body, replay = await buffered(receive)
        try:
            msg = json.loads(body)
        except ValueError:
            msg = None
        if isinstance(msg, dict) and msg.get("method") == "initialize":
            error = {
                "jsonrpc": "2.0",
                "id": msg.get("id"),
                "error": {
                    "code": -32022,
                    "message": "Unsupported protocol version",
                    "data": {"supported": ["2026-07-28"], "requested": msg.get("params", {}).get("protocolVersion")},
                },
            }
            return await answer(400, json.dumps(error).encode())
        return await app(scope, replay, send)

    return wrapped


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--paged", type=int, default=0)
    p.add_argument("--modern-only", action="store_true", help="refuse the legacy era (see modern_only)")
    a = p.parse_args()
    app = paged_server(a.paged) if a.paged else tool_server()
    if a.modern_only:
        app = modern_only(app)
    uvicorn.run(recording(app, a.log), host="127.0.0.1", port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
