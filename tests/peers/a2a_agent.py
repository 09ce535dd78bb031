"""An A2A agent for the gateway tests, built on the real `a2a-sdk` (spec 1.0).

    python3 a2a_agent.py --port P --log FILE [--compat] [--grpc-port G]

--compat also serves v0.3 on the same URL (and the v0.3 gRPC service with --grpc-port);
--grpc-port also serves the gRPC binding on 127.0.0.1:G (h2c), listed in the card as a GRPC
interface at `127.0.0.1:G` (the `host:port` form a2a-sdk gRPC clients dial).

The agent answers "echo: <text>" as an artifact. A message containing "wait" keeps its task
working for up to 20 s (so a test can cancel it). Its card lists its own URL, which a gateway must
rewrite. Every request is logged to FILE as JSON (`method`, `path`, `a2a_version`,
`authorization`); a gRPC call as `{"grpc": "/service/Method", "method": "Method"}`.
"""

import argparse
import asyncio
import json

import grpc
import uvicorn
from a2a.compat.v0_3 import a2a_v0_3_pb2_grpc
from a2a.compat.v0_3.grpc_handler import CompatGrpcHandler
from a2a.helpers.proto_helpers import new_task_from_user_message, new_text_artifact
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.request_handlers import DefaultRequestHandler, GrpcHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes, create_rest_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, TaskState, a2a_pb2_grpc
from starlette.applications import Starlette


class Echo(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue) -> None:
        task = context.current_task or new_task_from_user_message(context.message)
        if not context.current_task:
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.update_status(TaskState.TASK_STATE_WORKING)
        text = context.get_user_input()
        if "wait" in text:
            for _ in range(200):
                await asyncio.sleep(0.1)
        await updater.add_artifact(new_text_artifact("answer", f"echo: {text}").parts, name="answer")
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue) -> None:
        task = context.current_task
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.cancel()


def logging_middleware(app, path):
    async def wrapped(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        chunks = []
        while scope["method"] == "POST":
            m = await receive()
            chunks.append(m)
            if not m.get("more_body"):
                break
        body = b"".join(c.get("body", b"") for c in chunks)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        try:
            method = json.loads(body).get("method") if body else None
        except (ValueError, AttributeError):
            method = "<malformed>"
        with open(path, "a") as f:
            f.write(json.dumps({"http": scope["method"], "path": scope["path"], "method": method,
                                "a2a_version": headers.get("a2a-version"),
                                "authorization": headers.get("authorization")}) + "\n")
        it = iter(chunks)

        async def replay():
            try:
                return next(it)
            except StopIteration:
                return await receive()

        return await app(scope, replay if chunks else receive, send)

    return wrapped


class GrpcLog(grpc.aio.ServerInterceptor):
    def __init__(self, path):
        self.path = path

    async def intercept_service(self, continuation, details):
        md = dict(details.invocation_metadata or ())
        with open(self.path, "a") as f:
            f.write(json.dumps({"grpc": details.method, "method": details.method.rsplit("/", 1)[-1],
                                "a2a_version": md.get("a2a-version")}) + "\n")
        return await continuation(details)


async def serve(app, a, handler):
    http = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=a.port, log_level="warning"))
    if not a.grpc_port:
        return await http.serve()
    server = grpc.aio.server(interceptors=[GrpcLog(a.log)])
    a2a_pb2_grpc.add_A2AServiceServicer_to_server(GrpcHandler(handler), server)
    if a.compat:
        a2a_v0_3_pb2_grpc.add_A2AServiceServicer_to_server(CompatGrpcHandler(handler), server)
    server.add_insecure_port(f"127.0.0.1:{a.grpc_port}")
    await server.start()
    await asyncio.gather(http.serve(), server.wait_for_termination())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--compat", action="store_true")
    p.add_argument("--grpc-port", type=int)
    # The card's gRPC URL as `SCHEME://127.0.0.1:G` instead of `127.0.0.1:G` (the A2A TCK parses
    # it as a URL).
    p.add_argument("--grpc-scheme")
    a = p.parse_args()
    url = f"http://127.0.0.1:{a.port}"
    interfaces = [
        AgentInterface(protocol_binding="JSONRPC", url=url + "/", protocol_version="1.0"),
        AgentInterface(protocol_binding="HTTP+JSON", url=url + "/rest", protocol_version="1.0"),
    ]
    if a.grpc_port:
        # First, so a client that supports gRPC prefers it.
        grpc_url = f"127.0.0.1:{a.grpc_port}"
        if a.grpc_scheme:
            grpc_url = f"{a.grpc_scheme}://{grpc_url}"
        interfaces.insert(0, AgentInterface(protocol_binding="GRPC", url=grpc_url, protocol_version="1.0"))
    if a.compat:
        # The card then also carries the v0.3 fields (`url`, `additionalInterfaces`, ...).
        interfaces.append(AgentInterface(protocol_binding="JSONRPC", url=url + "/", protocol_version="0.3"))
    card = AgentCard(
        name="echo", description="Echoes what it is told", version="1.0.0",
        supported_interfaces=interfaces,
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"], default_output_modes=["text/plain"],
        skills=[AgentSkill(id="echo", name="echo", description="echo", tags=["echo"])],
    )
    handler = DefaultRequestHandler(agent_executor=Echo(), task_store=InMemoryTaskStore(), agent_card=card)
    routes = (create_agent_card_routes(card)
              + create_jsonrpc_routes(handler, "/", enable_v0_3_compat=a.compat)
              + create_rest_routes(handler, path_prefix="/rest"))
    app = Starlette(routes=routes)
    asyncio.run(serve(logging_middleware(app, a.log), a, handler))


if __name__ == "__main__":
    main()
