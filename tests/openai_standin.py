"""A local stand-in for an OpenAI-compatible chat API, so tests drive the real `openai` client over HTTP.

    with OpenAIStandIn([tool_call("reject_candidate", '{"rank": 1}')]) as api:
        client = openai.OpenAI(base_url=api.base_url, api_key="k", max_retries=0)

It serves POST /v1/chat/completions only, answering each request with the next scripted answer: a
completion body (`tool_call`, `text_answer`), an `(http status, json body)` pair, or a function of the
request's JSON body returning either (to answer from what was asked, e.g. cite the paths it named). With
the script spent it answers 500, so a test that asks more than it scripted fails loudly. `requests` keeps every request
as received: its JSON body and its headers, names in lower case (to check the key was sent, and sent only there);
`image_urls(body)` lists the image parts a request carried.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


def completion(message: dict, finish_reason: str) -> dict:
    return {"id": "chatcmpl-standin", "object": "chat.completion", "created": 0, "model": "standin-model",
            "choices": [{"index": 0, "finish_reason": finish_reason, "message": {"role": "assistant", **message}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def tool_call(name: str, arguments: str = "{}", *more: tuple[str, str]) -> dict:
    """An answer calling `name` with the raw `arguments` text (not necessarily valid JSON), then `more`."""
    calls = [(name, arguments), *more]
    return completion({"content": None, "tool_calls": [
        {"id": f"call_{n}", "type": "function", "function": {"name": tool, "arguments": args}}
        for n, (tool, args) in enumerate(calls)]}, "tool_calls")


def text_answer(content: str) -> dict:
    return completion({"content": content}, "stop")


class OpenAIStandIn:
    def __init__(self, script: list[dict | tuple[int, dict] | Callable[[dict], dict | tuple[int, dict]]]):
        self.script = list(script)
        self.requests: list[dict] = []  # {"path", "headers", "body"}
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # http.server calls the handler of a POST by this name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with standin._lock:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    standin.requests.append({"path": self.path, "headers": headers,
                                             "body": json.loads(body or b"null")})
                    answer = standin.script.pop(0) if standin.script else (500, {"error": {"message": "unscripted"}})
                    if callable(answer):
                        answer = answer(standin.requests[-1]["body"])
                if self.path != "/v1/chat/completions":
                    answer = (404, {"error": {"message": f"no route {self.path}"}})
                status, payload = answer if isinstance(answer, tuple) else (200, answer)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # keep test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bodies(self) -> list[dict]:
        return [r["body"] for r in self.requests]


def image_urls(body: dict) -> list[str]:
    """The URLs (data URLs, for inlined images) of every image part in a chat request's messages."""
    return [part["image_url"]["url"] for message in body.get("messages", [])
            if isinstance(message.get("content"), list)
            for part in message["content"] if part.get("type") == "image_url"]
