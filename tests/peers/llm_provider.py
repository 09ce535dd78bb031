"""A fake LLM provider for the gateway tests: no real provider is reachable here, so this one
speaks the real wire formats, byte for byte as the official SDKs parse them.

    python3 llm_provider.py --port P --log FILE [--fail 429|500] [--cut-after N] [--delay-ms MS]
                            [--waiting N] [--cached N]

- OpenAI: POST /v1/chat/completions (JSON, or SSE `data: {chunk}` ... `data: [DONE]`, with the
  usage chunk only when `stream_options.include_usage`), POST /v1/embeddings (deterministic
  hashed bag-of-words vectors), POST /v1/responses (text input; JSON or SSE events), GET
  /v1/models.
- Anthropic: POST /v1/messages (JSON, or SSE `message_start` ... `message_stop`).
- OpenAI moderation: POST /v1/moderations (`input` a string or a list of strings); a text
  containing "violent" or "bomb" is flagged `violence`, "hateful" is flagged `hate`.
  `--moderation-delay-ms` waits before answering (a slow moderation service).
- vLLM-style GET /metrics (`vllm:num_requests_waiting`, `vllm:kv_cache_usage_perc`); POST
  /admin/load?waiting=N changes the reported queue.
- The answer is "echo: <last user text>". With tools offered and "weather" in the last user
  text, the model calls the first tool with {"city": "Paris"}. Usage counts words; `--cached N`
  adds N prompt tokens read from a prompt cache (OpenAI `prompt_tokens_details.cached_tokens`,
  included in `prompt_tokens`; Anthropic `cache_read_input_tokens`, apart from `input_tokens`).
- Scripted failures: `--fail` answers every completion with that status; `--cut-after N` closes
  a stream after N content events without ending it; `--delay-ms` waits before answering.
Every request is appended to FILE as JSON (`path`, `model`, `stream`, `authorization`,
`x_api_key`, `anthropic_version`, `body`).
"""

import argparse
import asyncio
import hashlib
import json
import math
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

ARGS = None
STATE = {"waiting": 0}


def words(text):
    return len(str(text).split())


def text_of(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def last_user_text(messages):
    for m in reversed(messages):
        if m.get("role") == "user":
            t = text_of(m.get("content"))
            if t:
                return t
    return ""


def prompt_tokens(body):
    n = words(text_of(body.get("system", "")))
    for m in body.get("messages", []):
        n += words(text_of(m.get("content")))
    return max(n, 1)


async def log(request, body):
    with open(ARGS.log, "a") as f:
        f.write(json.dumps({
            "path": request.url.path,
            "model": body.get("model") if isinstance(body, dict) else None,
            "stream": bool(body.get("stream")) if isinstance(body, dict) else False,
            "authorization": request.headers.get("authorization"),
            "x_api_key": request.headers.get("x-api-key"),
            "anthropic_version": request.headers.get("anthropic-version"),
            "body": body,
        }) + "\n")


async def read(request):
    raw = await request.body()
    try:
        body = json.loads(raw)
    except ValueError:
        body = {"_raw": raw.decode(errors="replace")}
    await log(request, body)
    if ARGS.delay_ms:
        await asyncio.sleep(ARGS.delay_ms / 1000)
    return body


def failure(kind):
    if kind == "openai":
        return JSONResponse({"error": {"message": f"scripted failure {ARGS.fail}", "type": "server_error", "param": None, "code": None}}, status_code=ARGS.fail)
    return JSONResponse({"type": "error", "error": {"type": "overloaded_error" if ARGS.fail >= 500 else "rate_limit_error", "message": f"scripted failure {ARGS.fail}"}}, status_code=ARGS.fail)


def wants_tool(body, names):
    return bool(names) and "weather" in last_user_text(body.get("messages", [])).lower()


def sse(data, event=None):
    out = f"event: {event}\n" if event else ""
    return (out + f"data: {json.dumps(data)}\n\n").encode()


async def chat(request: Request):
    body = await read(request)
    if ARGS.fail:
        return failure("openai")
    model = body.get("model", "?")
    reply = "echo: " + last_user_text(body.get("messages", []))
    tools = [t["function"]["name"] for t in body.get("tools", []) if t.get("type") == "function"]
    call = wants_tool(body, tools)
    usage = {"prompt_tokens": prompt_tokens(body) + ARGS.cached, "completion_tokens": 5 if call else words(reply)}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    if ARGS.cached:
        usage["prompt_tokens_details"] = {"cached_tokens": ARGS.cached}
    cid, created = "chatcmpl-fake", int(time.time())
    if not body.get("stream"):
        message = {"role": "assistant", "content": None if call else reply}
        if call:
            message["tool_calls"] = [{"id": "call_1", "type": "function", "function": {"name": tools[0], "arguments": json.dumps({"city": "Paris"})}}]
        return JSONResponse({
            "id": cid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if call else "stop"}],
            "usage": usage,
        })

    def chunk(delta, finish=None):
        return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    async def events():
        yield f"data: {json.dumps(chunk({'role': 'assistant', 'content': ''}))}\n\n".encode()
        sent = 0
        if call:
            args = json.dumps({"city": "Paris"})
            yield sse(chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": tools[0], "arguments": ""}}]}))
            for piece in (args[: len(args) // 2], args[len(args) // 2 :]):
                yield sse(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
            finish = "tool_calls"
        else:
            for w in reply.split(" "):
                if ARGS.cut_after is not None and sent >= ARGS.cut_after:
                    raise ConnectionError("scripted cut")
                yield sse(chunk({"content": (" " if sent else "") + w}))
                sent += 1
                await asyncio.sleep(0.02)
            finish = "stop"
        yield sse(chunk({}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            yield sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [], "usage": usage})
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def messages(request: Request):
    body = await read(request)
    if ARGS.fail:
        return failure("anthropic")
    model = body.get("model", "?")
    reply = "echo: " + last_user_text(body.get("messages", []))
    tools = [t["name"] for t in body.get("tools", [])]
    call = wants_tool(body, tools)
    in_tokens, out_tokens = prompt_tokens(body), (5 if call else words(reply))
    cache = {"cache_read_input_tokens": ARGS.cached} if ARGS.cached else {}
    stop = "tool_use" if call else "end_turn"
    content = [{"type": "tool_use", "id": "toolu_1", "name": tools[0], "input": {"city": "Paris"}}] if call else [{"type": "text", "text": reply}]
    if not body.get("stream"):
        return JSONResponse({
            "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": in_tokens, "output_tokens": out_tokens, **cache},
        })

    async def events():
        yield sse({"type": "message_start", "message": {"id": "msg_fake", "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": in_tokens, "output_tokens": 1, **cache}}}, "message_start")
        yield sse({"type": "ping"}, "ping")
        if call:
            yield sse({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_1", "name": tools[0], "input": {}}}, "content_block_start")
            args = json.dumps({"city": "Paris"})
            for piece in (args[: len(args) // 2], args[len(args) // 2 :]):
                yield sse({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": piece}}, "content_block_delta")
        else:
            yield sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}, "content_block_start")
            for i, w in enumerate(reply.split(" ")):
                if ARGS.cut_after is not None and i >= ARGS.cut_after:
                    raise ConnectionError("scripted cut")
                yield sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": (" " if i else "") + w}}, "content_block_delta")
                await asyncio.sleep(0.02)
        yield sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        yield sse({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": out_tokens}}, "message_delta")
        yield sse({"type": "message_stop"}, "message_stop")

    return StreamingResponse(events(), media_type="text/event-stream")


def embed(text, dim=64):
    v = [0.0] * dim
    for w in str(text).lower().split():
        w = "".join(c for c in w if c.isalnum())
        if w:
            v[int(hashlib.sha256(w.encode()).hexdigest(), 16) % dim] += 1.0
    norm = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / norm for x in v]


async def embeddings(request: Request):
    body = await read(request)
    inputs = body.get("input", [])
    inputs = [inputs] if isinstance(inputs, str) else inputs
    return JSONResponse({
        "object": "list", "model": body.get("model", "?"),
        "data": [{"object": "embedding", "index": i, "embedding": embed(t)} for i, t in enumerate(inputs)],
        "usage": {"prompt_tokens": sum(words(t) for t in inputs), "total_tokens": sum(words(t) for t in inputs)},
    })


async def responses(request: Request):
    body = await read(request)
    if ARGS.fail:
        return failure("openai")
    text = body.get("input") if isinstance(body.get("input"), str) else ""
    reply = "echo: " + text
    usage = {"input_tokens": max(words(text), 1), "output_tokens": words(reply), "total_tokens": max(words(text), 1) + words(reply)}
    message = {"id": "msg_r", "type": "message", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": reply, "annotations": []}]}
    response = {"id": "resp_fake", "object": "response", "created_at": int(time.time()), "status": "completed",
                "model": body.get("model", "?"), "output": [message], "usage": usage,
                "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}
    if not body.get("stream"):
        return JSONResponse(response)

    async def events():
        seq = 0
        def ev(kind, **data):
            nonlocal seq
            seq += 1
            return sse({"type": kind, "sequence_number": seq, **data}, kind)
        yield ev("response.created", response={**response, "status": "in_progress", "output": [], "usage": None})
        yield ev("response.output_item.added", output_index=0, item={**message, "status": "in_progress", "content": []})
        yield ev("response.content_part.added", item_id="msg_r", output_index=0, content_index=0, part={"type": "output_text", "text": "", "annotations": []})
        for i, w in enumerate(reply.split(" ")):
            yield ev("response.output_text.delta", item_id="msg_r", output_index=0, content_index=0, delta=(" " if i else "") + w, logprobs=[])
        yield ev("response.output_text.done", item_id="msg_r", output_index=0, content_index=0, text=reply, logprobs=[])
        yield ev("response.content_part.done", item_id="msg_r", output_index=0, content_index=0, part=message["content"][0])
        yield ev("response.output_item.done", output_index=0, item=message)
        yield ev("response.completed", response=response)

    return StreamingResponse(events(), media_type="text/event-stream")


FLAGS = {"violence": ("violent", "bomb"), "hate": ("hateful",)}


async def moderations(request: Request):
    body = await read(request)
    if ARGS.moderation_delay_ms:
        await asyncio.sleep(ARGS.moderation_delay_ms / 1000)
    inputs = body.get("input", "")
    inputs = inputs if isinstance(inputs, list) else [inputs]
    results = []
    for text in inputs:
        low = str(text).lower()
        cats = {c: any(w in low for w in words) for c, words in FLAGS.items()}
        results.append({"flagged": any(cats.values()), "categories": cats,
                        "category_scores": {c: (0.9 if on else 0.01) for c, on in cats.items()}})
    return JSONResponse({"id": "modr-fake", "model": body.get("model") or "omni-moderation-latest", "results": results})


async def models(request: Request):
    return JSONResponse({"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}]})


async def metrics(request: Request):
    return PlainTextResponse(
        "# TYPE vllm:num_requests_waiting gauge\n"
        f'vllm:num_requests_waiting{{model_name="fake-model"}} {STATE["waiting"]}\n'
        "# TYPE vllm:kv_cache_usage_perc gauge\n"
        f'vllm:kv_cache_usage_perc{{model_name="fake-model"}} {min(STATE["waiting"] / 100, 1.0)}\n'
    )


async def load(request: Request):
    STATE["waiting"] = int(request.query_params.get("waiting", "0"))
    return Response(status_code=204)


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--fail", type=int, default=0)
    p.add_argument("--cut-after", type=int, default=None)
    p.add_argument("--delay-ms", type=int, default=0)
    p.add_argument("--waiting", type=int, default=0)
    p.add_argument("--cached", type=int, default=0)
    p.add_argument("--moderation-delay-ms", type=int, default=0)
    ARGS = p.parse_args()
    STATE["waiting"] = ARGS.waiting
    app = Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/moderations", moderations, methods=["POST"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/admin/load", load, methods=["POST"]),
    ])
    uvicorn.run(app, host="127.0.0.1", port=ARGS.port, log_level="warning")


if __name__ == "__main__":
    main()
