#!/usr/bin/env python3
"""A gRPC peer for the end-to-end tests, with no generated code (raw bytes, generic handlers).

    grpc_peer.py server        serve on 127.0.0.1:<free port>, print the port, run until stdin closes
    grpc_peer.py client PORT   call the server's methods at 127.0.0.1:PORT, print the results as JSON

Methods of service `weir.test.Echo`:
    Echo     replies b"echo:" + request, with trailing metadata x-trailer: yes
    Missing  aborts with NOT_FOUND and the message "no such thing: <request>", with x-why: absent
"""

import json
import sys
import threading
from concurrent import futures

import grpc

SERVICE = "weir.test.Echo"
# Never go through an HTTP proxy that the environment may name: the tests are 127.0.0.1 only.
OPTIONS = [("grpc.enable_http_proxy", 0)]


def echo(request, context):
    context.set_trailing_metadata((("x-trailer", "yes"),))
    seen = dict(context.invocation_metadata())
    context.send_initial_metadata((("x-saw-forwarded-for", seen.get("x-forwarded-for", "")),))
    return b"echo:" + request


def missing(request, context):
    context.set_trailing_metadata((("x-why", "absent"),))
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing: " + request.decode())


def serve():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=OPTIONS)
    handlers = {
        # Without (de)serializers the handlers see and return raw bytes.
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Missing": grpc.unary_unary_rpc_method_handler(missing),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    # Stop when the test closes stdin (or dies), so no server outlives its test.
    done = threading.Event()

    def watch_stdin():
        sys.stdin.read()
        done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    done.wait(timeout=300)
    server.stop(0)


def pairs(metadata):
    return [[k, v if isinstance(v, str) else v.decode("latin-1")] for k, v in (metadata or ())]


def client(port):
    out = {}
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=OPTIONS) as channel:
        call_echo = channel.unary_unary(f"/{SERVICE}/Echo")
        try:
            reply, call = call_echo.with_call(b"hello", timeout=15)
            out["echo"] = {
                "code": call.code().name,
                "reply": reply.decode("latin-1"),
                "initial": pairs(call.initial_metadata()),
                "trailing": pairs(call.trailing_metadata()),
            }
        except grpc.RpcError as e:
            out["echo"] = {"code": e.code().name, "details": e.details()}

        big = bytes(range(256)) * 1024  # 256 KiB: several DATA frames and flow-control windows
        try:
            reply, call = call_echo.with_call(big, timeout=15)
            out["big"] = {
                "code": call.code().name,
                "len": len(reply),
                "intact": reply == b"echo:" + big,
            }
        except grpc.RpcError as e:
            out["big"] = {"code": e.code().name, "details": e.details()}

        call_missing = channel.unary_unary(f"/{SERVICE}/Missing")
        try:
            reply, call = call_missing.with_call(b"thing", timeout=15)
            out["missing"] = {"code": call.code().name, "reply": reply.decode("latin-1")}
        except grpc.RpcError as e:
            out["missing"] = {
                "code": e.code().name,
                "details": e.details(),
                "trailing": pairs(e.trailing_metadata()),
            }
    print(json.dumps(out), flush=True)


def main():
    if sys.argv[1:2] == ["server"]:
        serve()
    elif sys.argv[1:2] == ["client"] and len(sys.argv) == 3:
        client(int(sys.argv[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
