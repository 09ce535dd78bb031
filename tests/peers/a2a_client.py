"""Drives the real `a2a-sdk` client against an agent URL (the gateway's) and prints one JSON
result: the card it discovered, a message sent and answered, a streamed one, and a task that is
fetched and cancelled.

    python3 a2a_client.py '{"url": ..., "binding": "JSONRPC"|"HTTP+JSON", "headers": {...}}'
"""

import asyncio
import json
import sys

import httpx
from a2a.client import ClientConfig, create_client
from a2a.types import CancelTaskRequest, GetTaskRequest, Message, Part, Role, SendMessageRequest
from google.protobuf.json_format import MessageToDict


def message(text, mid):
    return SendMessageRequest(message=Message(message_id=mid, role=Role.ROLE_USER, parts=[Part(text=text)]))


def artifact_text(task):
    return "".join(p.text for a in task.artifacts for p in a.parts)


async def main(spec):
    http = httpx.AsyncClient(headers=spec.get("headers", {}), timeout=30)
    out = {}
    bindings = [spec.get("binding", "JSONRPC")]

    plain = await create_client(spec["url"], client_config=ClientConfig(
        streaming=False, httpx_client=http, supported_protocol_bindings=bindings))
    card = plain._card  # the card the client resolved and uses
    out["card_urls"] = [i.url for i in card.supported_interfaces]
    last = None
    async for event in plain.send_message(message("hello", "m1")):
        last = event
    task = last.task if last.HasField("task") else None
    out["sent"] = {"state": MessageToDict(task)["status"]["state"] if task else None,
                   "text": artifact_text(task) if task else None}

    streaming = await create_client(spec["url"], client_config=ClientConfig(
        streaming=True, httpx_client=http, supported_protocol_bindings=bindings))
    kinds, text = [], ""
    async for event in streaming.send_message(message("stream me", "m2")):
        kind = event.WhichOneof("payload")
        kinds.append(kind)
        if kind == "artifact_update":
            text += "".join(p.text for p in event.artifact_update.artifact.parts)
    out["streamed"] = {"kinds": kinds, "text": text}

    # A long task: the first event names it; get it, cancel it.
    task_id = None
    events = streaming.send_message(message("please wait", "m3"))
    async for event in events:
        kind = event.WhichOneof("payload")
        if kind == "task":
            task_id = event.task.id
        elif kind == "status_update":
            task_id = event.status_update.task_id
        if task_id:
            break
    got = await plain.get_task(GetTaskRequest(id=task_id))
    cancelled = await plain.cancel_task(CancelTaskRequest(id=task_id))
    out["task"] = {"got": MessageToDict(got)["status"]["state"],
                   "cancelled": MessageToDict(cancelled)["status"]["state"]}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
