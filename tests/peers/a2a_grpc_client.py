"""Drives the real `a2a-sdk` client over the gRPC binding and prints one JSON result.

    python3 a2a_grpc_client.py '{"url": CARD_BASE, "key": API_KEY, "calls": [...]}'
    python3 a2a_grpc_client.py '{"target": "HOST:PORT", "key": API_KEY, "calls": [...]}'

With `url` the client discovers the agent card there (over HTTP, as clients do) and dials the
card's GRPC interface; with `target` it dials that address with the card's interfaces replaced
by one GRPC interface there. The API key travels as `x-api-key` metadata (an HTTP/2 header).
Calls, in order: `{"op": "send", "text": T}` and `{"op": "get", "id": ID | "$task"}` (`$task`:
the task the last send created). Each result is `{"code": "OK" | <gRPC status name>,
"details", "task_id", "state", "text"}`.
"""

import asyncio
import json
import sys

import grpc
import httpx
from a2a.client import ClientConfig, create_client
from a2a.client.card_resolver import A2ACardResolver
from a2a.types import AgentInterface, GetTaskRequest, Message, Part, Role, SendMessageRequest
from google.protobuf.json_format import MessageToDict

# Never through an HTTP proxy the environment may name: the tests are 127.0.0.1 only.
OPTIONS = [("grpc.enable_http_proxy", 0)]


class Key(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, key):
        self.key = key

    def _with_key(self, details):
        md = list(details.metadata or []) + [("x-api-key", self.key)]
        return details._replace(metadata=md)

    async def intercept_unary_unary(self, continuation, details, request):
        return await continuation(self._with_key(details), request)

    async def intercept_unary_stream(self, continuation, details, request):
        return await continuation(self._with_key(details), request)


def status(e):
    """The gRPC status name behind an SDK error (the SDK wraps `AioRpcError`s)."""
    while e is not None:
        if isinstance(e, grpc.aio.AioRpcError):
            return e.code().name, e.details()
        e = e.__cause__
    return None


async def main(spec):
    out = {}
    http = httpx.AsyncClient(headers={"x-api-key": spec["key"]}, timeout=30)
    channel_factory = lambda url: grpc.aio.insecure_channel(url, options=OPTIONS,  # noqa: E731
                                                            interceptors=[Key(spec["key"])])
    if "url" in spec:
        card = await A2ACardResolver(http, spec["url"]).get_agent_card()
        out["card"] = [{"url": i.url, "binding": i.protocol_binding} for i in card.supported_interfaces]
    else:
        card = await A2ACardResolver(http, spec["card_from"]).get_agent_card()
        del card.supported_interfaces[:]
        card.supported_interfaces.append(
            AgentInterface(protocol_binding="GRPC", url=spec["target"], protocol_version="1.0"))
    client = await create_client(card, client_config=ClientConfig(
        streaming=False, httpx_client=http, supported_protocol_bindings=["GRPC"],
        grpc_channel_factory=channel_factory))
    out["dialled"] = [i.url for i in card.supported_interfaces if i.protocol_binding == "GRPC"][:1]
    results, last_task = [], None
    for call in spec["calls"]:
        r = {"op": call["op"]}
        try:
            if call["op"] == "send":
                req = SendMessageRequest(message=Message(message_id=f"g{len(results)}", role=Role.ROLE_USER,
                                                         parts=[Part(text=call["text"])]))
                last = None
                async for event in client.send_message(req):
                    last = event
                task = last.task if last is not None and last.HasField("task") else None
                if task is not None:
                    last_task = task.id
                    r.update(task_id=task.id, state=MessageToDict(task)["status"]["state"],
                             text="".join(p.text for a in task.artifacts for p in a.parts))
            elif call["op"] == "get":
                tid = last_task if call["id"] == "$task" else call["id"]
                task = await client.get_task(GetTaskRequest(id=tid))
                r.update(task_id=task.id, state=MessageToDict(task)["status"]["state"])
            r["code"] = "OK"
        except Exception as e:  # noqa: BLE001 - the status is the result
            code = status(e)
            r["code"], r["details"] = code if code else ("CLIENT_ERROR", repr(e))
        results.append(r)
    out["results"] = results
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
