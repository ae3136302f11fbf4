"""The vision chat model answers come from: any OpenAI-compatible chat API that takes images (OpenAI,
vLLM, Ollama, llama.cpp server), through the real `openai` client.

The API key goes to the client and nowhere else: not in `ChatReply`, not in `server` (the base URL
without user info, query or fragment, for logs and MLflow), not in error text (a failure is reported by
its type and HTTP status only, since servers echo keys back).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import openai

TIMEOUT_S = 120.0  # a local vision model on a CPU can take a minute over a few images


@dataclass(frozen=True)
class VisionSettings:
    """Where the model is. Empty `base_url` or `model`: no model configured."""
    base_url: str = ""
    model: str = ""
    api_key: str = field(default="", repr=False)  # repr=False: a settings object printed in a log shows no key
    timeout_s: float = TIMEOUT_S

    @property
    def configured(self) -> bool:
        return bool(self.base_url and self.model)

    @property
    def server(self) -> str:
        return safe_server(self.base_url)


def safe_server(base_url: str) -> str:
    """The base URL as it may be logged: scheme, host, port and path; no user:password, query or fragment."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass(frozen=True)
class ChatReply:
    """The model's answer (`text`), or why there is none (`error`: the exception's type and HTTP status)."""
    text: str
    seconds: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None


class VisionModel:
    def __init__(self, client: openai.OpenAI, model: str, server: str = ""):
        self.client, self.model, self.server = client, model, server

    def chat(self, messages: list[dict]) -> ChatReply:
        started = time.perf_counter()
        try:
            completion = self.client.chat.completions.create(model=self.model, messages=messages)
            text = completion.choices[0].message.content
        # Any failure (network, HTTP status, a malformed body) becomes a reply with an error. Only the type
        # and status are kept: an error's text can echo the request, key included.
        except Exception as err:  # noqa: BLE001
            status = getattr(err, "status_code", None)
            return ChatReply("", time.perf_counter() - started,
                             error=type(err).__name__ + (f" (HTTP {status})" if status else ""))
        seconds = time.perf_counter() - started
        usage = getattr(completion, "usage", None)
        tokens = {"prompt_tokens": getattr(usage, "prompt_tokens", None),
                  "completion_tokens": getattr(usage, "completion_tokens", None)}
        if not isinstance(text, str) or not text.strip():
            return ChatReply("", seconds, **tokens, error="the model gave an empty answer")
        return ChatReply(text.strip(), seconds, **tokens)


def build_vision_model(settings: VisionSettings) -> VisionModel | None:
    if not settings.configured:
        return None
    # Local servers (Ollama, llama.cpp, vLLM) take any key, but the client insists on one.
    client = openai.OpenAI(base_url=settings.base_url, api_key=settings.api_key or "no-key",
                           timeout=settings.timeout_s, max_retries=1)
    return VisionModel(client, settings.model, settings.server)
