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
A step that raises prints {"error": "<message>"} and the scenario goes on.
"""

import asyncio
import json
import os
import sys
import time

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


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
    async with Client(transport, mode=spec.get("mode", "auto")) as client:
        for op in spec["ops"]:
            try:
                out = await step(client, op)
            except Exception as e:  # the test asserts on the message
                out = {"error": str(e) or type(e).__name__}
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
