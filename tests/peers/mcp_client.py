"""Drives the real Python `mcp` client through a scenario and prints one JSON result per step.

    python3 mcp_client.py '{"url": ..., "mode": "legacy"|"2026-07-28"|"auto",
                            "headers": {...}, "ops": [...]}'

Ops:
    {"op": "list_tools"}                        -> {"tools": [names]}
    {"op": "list_resources"}                    -> {"uris": [uris]}
    {"op": "call", "name": n, "args": {...}, "progress": true}
        -> {"text": "...", "is_error": bool, "progress": [[progress, total, message, at_s]],
            "done_at_s": seconds}     (at_s: seconds since the call started)
    {"op": "read", "uri": u}                    -> {"uris": [...], "texts": [...]}
    {"op": "pause", "signal": path, "resume": path}
        -> writes `signal`, waits (at most 60 s) until `resume` exists: the test changes the
           world meanwhile (restarts a server) while this client keeps its session.
    {"op": "prompt", "name": n, "args": {...}}  -> {"uris": [...], "texts": [...]}
    {"op": "subscribe", "uri": u} / {"op": "unsubscribe", "uri": u}   -> {"ok": true}
    {"op": "complete", "prompt": n, "arg": a, "value": v}            -> {"values": [...]}
    {"op": "listen", "tools": true, "resources": [uri...], "call": n, "args": {...}}
        -> opens `subscriptions/listen` (2026-07-28), calls `n`, waits (at most 30 s) for the
           first event: {"honored": {...}, "event": "<event type>", "uri": ...}
    {"op": "notification", "method": m}
        -> waits (at most 30 s) for a notification `m` from the server: {"params": {...}}
Call results also list the URIs of their `resource_link` and embedded resources ("uris").

With "answer": true in the spec the client declares sampling, elicitation and roots and answers
every such request from the server; "answered" in the last line lists what it was asked.
A step that raises prints {"error": "<message>"} and the scenario goes on.
"""

import asyncio
import json
import os
import sys
import time

import httpx2
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client

# Requests the server sent the client, and notifications it received, in order.
ANSWERED = []
NOTIFICATIONS = []


def uris_of(contents):
    out = []
    for c in contents:
        if getattr(c, "type", None) == "resource_link":
            out.append(str(c.uri))
        elif getattr(c, "type", None) == "resource":
            out.append(str(c.resource.uri))
    return out


async def on_sampling(context, params):
    ANSWERED.append("sampling/createMessage")
    asked = "".join(getattr(m.content, "text", "") for m in params.messages)
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text=f"sampled: {asked}"),
        model="weir-test-model",
        stop_reason="endTurn",
    )


async def on_elicitation(context, params):
    ANSWERED.append("elicitation/create")
    schema = getattr(params, "requested_schema", None) or {}
    content = {}
    for name, prop in (schema.get("properties") or {}).items():
        kind = prop.get("type")
        if "default" in prop:
            content[name] = prop["default"]
        elif prop.get("enum"):
            content[name] = prop["enum"][0]
        elif kind == "boolean":
            content[name] = True
        elif kind in ("integer", "number"):
            content[name] = prop.get("minimum", 1)
        elif kind == "string":
            content[name] = "weir@example.com" if prop.get("format") == "email" else "weir"
    return types.ElicitResult(action="accept", content=content)


async def on_roots(context):
    ANSWERED.append("roots/list")
    return types.ListRootsResult(roots=[types.Root(uri="file:///weir-test-root", name="weir")])


async def on_message(message):
    if isinstance(message, types.ServerNotification):
        NOTIFICATIONS.append(message.root if hasattr(message, "root") else message)


async def step(client, op):
    kind = op["op"]
    if kind == "list_tools":
        return {"tools": [t.name for t in (await client.list_tools()).tools]}
    if kind == "list_resources":
        return {"uris": [str(r.uri) for r in (await client.list_resources()).resources]}
    if kind == "call":
        started = time.monotonic()
        progress = []

        async def on_progress(p, total, message):
            progress.append([p, total, message, time.monotonic() - started])

        result = await client.call_tool(
            op["name"],
            op.get("args", {}),
            progress_callback=on_progress if op.get("progress") else None,
        )
        text = "".join(getattr(c, "text", "") for c in result.content)
        return {
            "text": text,
            "uris": uris_of(result.content),
            "is_error": bool(result.is_error),
            "progress": progress,
            "done_at_s": time.monotonic() - started,
        }
    if kind == "read":
        r = await client.read_resource(op["uri"])
        return {
            "uris": [str(c.uri) for c in r.contents],
            "texts": [getattr(c, "text", None) for c in r.contents],
        }
    if kind == "prompt":
        r = await client.get_prompt(op["name"], op.get("args", {}))
        return {
            "uris": uris_of([m.content for m in r.messages]),
            "texts": [getattr(m.content, "text", None) for m in r.messages],
        }
    if kind == "subscribe":
        await client.subscribe_resource(op["uri"])
        return {"ok": True}
    if kind == "unsubscribe":
        await client.unsubscribe_resource(op["uri"])
        return {"ok": True}
    if kind == "complete":
        r = await client.complete(
            types.PromptReference(type="ref/prompt", name=op["prompt"]),
            {"name": op["arg"], "value": op["value"]},
        )
        return {"values": r.completion.values}
    if kind == "listen":
        async with client.listen(
            tools_list_changed=op.get("tools", False),
            resource_subscriptions=op.get("resources", ()),
        ) as sub:
            await client.call_tool(op["call"], op.get("args", {}))

            async def first():
                async for event in sub:
                    return event

            event = await asyncio.wait_for(first(), 30)
            honored = sub.honored.model_dump(mode="json", by_alias=True, exclude_none=True)
            return {"honored": honored, "event": type(event).__name__, "uri": getattr(event, "uri", None)}
    if kind == "notification":
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for n in NOTIFICATIONS:
                if getattr(n, "method", None) == op["method"]:
                    params = getattr(n, "params", None)
                    return {"params": params.model_dump(mode="json", by_alias=True) if params else {}}
            await asyncio.sleep(0.05)
        raise TimeoutError(f"no {op['method']} notification within 30 s")
    if kind == "pause":
        open(op["signal"], "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(op["resume"]) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return {"paused": True}
    raise ValueError(f"unknown op {kind}")


async def main(spec):
    http = httpx2.AsyncClient(headers=spec.get("headers", {}), timeout=30)
    transport = streamable_http_client(spec["url"], http_client=http)
    answering = {}
    if spec.get("answer"):
        answering = dict(
            sampling_callback=on_sampling,
            elicitation_callback=on_elicitation,
            list_roots_callback=on_roots,
        )
    async with Client(
        transport, mode=spec.get("mode", "auto"), message_handler=on_message, **answering
    ) as client:
        for op in spec["ops"]:
            try:
                out = await step(client, op)
            except Exception as e:  # the test asserts on the message
                out = {"error": str(e) or type(e).__name__}
            print(json.dumps(out), flush=True)
    if spec.get("answer"):
        print(json.dumps({"answered": ANSWERED}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
