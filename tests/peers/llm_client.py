"""Drives the official `openai` and `anthropic` SDKs against a base URL and prints one JSON
result per call.

    python3 llm_client.py '{"base": "http://127.0.0.1:P", "key": "...", "calls": [...]}'

A call: {"sdk": "openai"|"anthropic", "model": m, "prompt": "...", "stream": bool,
         "prompt_bytes": N (instead of the prompt: N bytes of "x", too many for a command line),
         "tools": bool, "include_usage": bool, "system": str or parts/blocks,
         "messages": [...] (instead of the prompt, sent as given)}
-> openai:    {"text", "tool_calls": [[name, arguments as parsed JSON]], "finish", "usage"}
-> anthropic: {"text", "tool_uses": [[name, input]], "stop", "usage"}
-> openai-embeddings: {"dims", "usage"}; openai-responses: {"text", "usage" | "final"}
or {"error": {"class", "status", "message", "body", "type", "code", "param"}} when the SDK
raises (`body` is the parsed error body the SDK kept; `type`/`code`/`param` the attributes
the openai SDK reads from it).
"""

import json
import sys

import anthropic
import openai

WEATHER_OPENAI = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
WEATHER_ANTHROPIC = [{"name": "get_weather", "description": "The weather in a city",
                      "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]


def prompt(c):
    return "x" * c["prompt_bytes"] if "prompt_bytes" in c else c.get("prompt", "hello there")


def with_openai(client, c):
    messages = c.get("messages") or [{"role": "user", "content": prompt(c)}]
    if "system" in c:
        messages = [{"role": "system", "content": c["system"]}] + messages
    args = {"model": c["model"], "messages": messages}
    if c.get("tools"):
        args["tools"] = WEATHER_OPENAI
    if not c.get("stream"):
        r = client.chat.completions.create(**args)
        m = r.choices[0].message
        return {
            "text": m.content,
            "tool_calls": [[t.function.name, json.loads(t.function.arguments)] for t in (m.tool_calls or [])],
            "finish": r.choices[0].finish_reason,
            "usage": r.usage.model_dump() if r.usage else None,
        }
    if c.get("include_usage"):
        args["stream_options"] = {"include_usage": True}
    text, calls, finish, usage = "", {}, None, None
    for ch in client.chat.completions.create(stream=True, **args):
        if ch.usage:
            usage = ch.usage.model_dump()
        if not ch.choices:
            continue
        d = ch.choices[0].delta
        text += d.content or ""
        for t in d.tool_calls or []:
            entry = calls.setdefault(t.index, ["", ""])
            if t.function and t.function.name:
                entry[0] = t.function.name
            entry[1] += (t.function.arguments or "") if t.function else ""
        finish = ch.choices[0].finish_reason or finish
    return {
        "text": text,
        "tool_calls": [[n, json.loads(a)] for n, a in calls.values()],
        "finish": finish,
        "usage": usage,
    }


def with_anthropic(client, c):
    args = {"model": c["model"], "max_tokens": 100,
            "messages": c.get("messages") or [{"role": "user", "content": prompt(c)}]}
    if "system" in c:
        args["system"] = c["system"]
    if c.get("tools"):
        args["tools"] = WEATHER_ANTHROPIC
    if c.get("stream"):
        with client.messages.stream(**args) as s:
            m = s.get_final_message()
    else:
        m = client.messages.create(**args)
    return {
        "text": "".join(b.text for b in m.content if b.type == "text"),
        "tool_uses": [[b.name, b.input] for b in m.content if b.type == "tool_use"],
        "stop": m.stop_reason,
        "usage": {"input": m.usage.input_tokens, "output": m.usage.output_tokens,
                  "cache_read": m.usage.cache_read_input_tokens,
                  "cache_creation": m.usage.cache_creation_input_tokens},
    }


def with_openai_other(client, c):
    """`embeddings` and `responses`: the OpenAI APIs the gateway passes through."""
    if c["sdk"] == "openai-embeddings":
        r = client.embeddings.create(model=c["model"], input=c.get("prompt", "hello there"))
        return {"dims": len(r.data[0].embedding), "usage": r.usage.model_dump()}
    if c.get("stream"):
        text = ""
        with client.responses.stream(model=c["model"], input=c.get("prompt", "hello there")) as s:
            for event in s:
                if event.type == "response.output_text.delta":
                    text += event.delta
            final = s.get_final_response()
        return {"text": text, "final": final.output_text}
    r = client.responses.create(model=c["model"], input=c.get("prompt", "hello there"))
    return {"text": r.output_text, "usage": r.usage.model_dump() if r.usage else None}


def main(spec):
    o = openai.OpenAI(base_url=spec["base"] + "/v1", api_key=spec["key"], max_retries=0, timeout=30)
    a = anthropic.Anthropic(base_url=spec["base"], api_key=spec["key"], max_retries=0, timeout=30)
    for c in spec["calls"]:
        try:
            if c["sdk"] == "openai":
                out = with_openai(o, c)
            elif c["sdk"].startswith("openai-"):
                out = with_openai_other(o, c)
            else:
                out = with_anthropic(a, c)
        except Exception as e:  # the test asserts on it
            out = {"error": {"class": type(e).__name__, "status": getattr(e, "status_code", None), "message": str(e),
                             "body": getattr(e, "body", None), "type": getattr(e, "type", None),
                             "code": getattr(e, "code", None), "param": getattr(e, "param", None)}}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
