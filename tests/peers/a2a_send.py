"""Sends messages with the real `a2a-sdk` client to an agent URL (the gateway's) and prints one
JSON result per message: the text the agent answered (artifact parts, joined), or the error the
client raised.

    python3 a2a_send.py '{"url": ..., "binding": "JSONRPC"|"HTTP+JSON", "headers": {...},
                          "messages": [{"text": "...", "stream": bool}]}'
-> {"text": "...", "kinds": [event kinds]} or {"error": {"class": ..., "message": ...}}
"""

import asyncio
import json
import sys

import httpx
from a2a.client import ClientConfig, create_client
from a2a.types import Message, Part, Role, SendMessageRequest


async def send(client, text, mid):
    request = SendMessageRequest(message=Message(message_id=mid, role=Role.ROLE_USER, parts=[Part(text=text)]))
    answer, kinds = "", []
    async for event in client.send_message(request):
        kind = event.WhichOneof("payload")
        kinds.append(kind)
        if kind == "task":
            answer = "".join(p.text for a in event.task.artifacts for p in a.parts) or answer
        elif kind == "artifact_update":
            answer += "".join(p.text for p in event.artifact_update.artifact.parts)
        elif kind == "message":
            answer += "".join(p.text for p in event.message.parts)
    return {"text": answer, "kinds": kinds}


async def main(spec):
    http = httpx.AsyncClient(headers=spec.get("headers", {}), timeout=30)
    bindings = [spec.get("binding", "JSONRPC")]
    clients = {}
    for i, m in enumerate(spec["messages"]):
        streaming = bool(m.get("stream"))
        if streaming not in clients:
            clients[streaming] = await create_client(spec["url"], client_config=ClientConfig(
                streaming=streaming, httpx_client=http, supported_protocol_bindings=bindings))
        try:
            out = await send(clients[streaming], m["text"], f"m{i}")
        except Exception as e:  # the test asserts on it
            out = {"error": {"class": type(e).__name__, "message": str(e)}}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
