"""Drives the real Python `mcp` client against a URL and prints one JSON line per step, for the
stdio bridge tests (tests/e2e/stdio_bridge.rs).

    python3 stdio_client.py '{"url": ..., "mode": "legacy"|"2026-07-28", "ops": [...]}'

The first line describes the session: {"server": name, "protocol": version}.
Ops:
    {"op": "list_tools"}                        -> {"tools": [names]}
    {"op": "call", "name": n, "args": {...}, "progress": true}
        -> {"text": "...", "is_error": bool, "progress": [[progress, total, at_s]],
            "done_at_s": seconds, "logs": [data of the log notifications received so far]}
A step that raises prints {"error": "<message>"} and the scenario goes on.
"""

import asyncio
import json
import sys
import time

from mcp import Client


async def main(spec):
    logs = []

    async def on_log(params):
        logs.append(params.data)

    async with Client(spec["url"], mode=spec.get("mode", "legacy"), logging_callback=on_log) as client:
        info = client.server_info
        print(json.dumps({"server": info.name if info else None, "protocol": client.protocol_version}), flush=True)
        for op in spec["ops"]:
            try:
                out = await step(client, op, logs)
            except Exception as e:  # the test asserts on the message
                out = {"error": str(e) or type(e).__name__}
            print(json.dumps(out), flush=True)


async def step(client, op, logs):
    kind = op["op"]
    if kind == "list_tools":
        return {"tools": [t.name for t in (await client.list_tools()).tools]}
    if kind == "call":
        started = time.monotonic()
        progress = []

        async def on_progress(p, total, message):
            progress.append([p, total, time.monotonic() - started])

        result = await client.call_tool(
            op["name"],
            op.get("args", {}),
            progress_callback=on_progress if op.get("progress") else None,
        )
        return {
            "text": "".join(getattr(c, "text", "") for c in result.content),
            "is_error": bool(result.is_error),
            "progress": progress,
            "done_at_s": time.monotonic() - started,
            "logs": list(logs),
        }
    raise ValueError(f"unknown op {kind}")


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
