"""What may be asked: a question of bounded length and k images from 1 to MAX_K. Light (no model, index or
client imports), so a front end checks its input before loading anything."""

from __future__ import annotations

WITH_IMAGES, MODEL_ALONE = "rag", "no-rag"  # an answer's mode: the `mode` param and tag in MLflow
DEFAULT_K, MAX_K = 4, 8  # images per request: each up to evidence.IMAGE_MAX_SIDE px, ~100 KB as base64
QUESTION_MAX_CHARS = 1_000


class InvalidRequest(ValueError):
    """A question or k that cannot be asked; the message says what is allowed."""


def check_question(question: str) -> str:
    question = question.strip() if isinstance(question, str) else ""
    if not question:
        raise InvalidRequest("the question is empty")
    if len(question) > QUESTION_MAX_CHARS:
        raise InvalidRequest(f"the question is {len(question)} characters; at most {QUESTION_MAX_CHARS}")
    return question


def check_k(k: str | int) -> int:
    """k as typed (`-k 4`): a whole number from 1 to MAX_K."""
    try:
        value = int(str(k).strip())
    except ValueError:
        raise InvalidRequest(f"-k must be a whole number from 1 to {MAX_K}, not {str(k)[:20]!r}") from None
    if not 1 <= value <= MAX_K:
        raise InvalidRequest(f"-k must be from 1 to {MAX_K} (the images shown to the model), not {value}")
    return value
