"""FLUX Kontext multi-image on Replicate: the seed photo and the brand image in, one generated ad out.

Uses the official `replicate` client for the API calls; only the output download is plain httpx, because
output URLs are public CDN links that must not receive the API token.

A real image API fails in passing (429 rate limits, 5xx, dropped connections, hangs), so every call is
retried a bounded number of times with exponential backoff and jitter, or after Retry-After when the server
sends one, all inside one deadline per generation. Creating a prediction costs money and Replicate takes no
idempotency key, so a create whose answer was lost is never simply sent again: the generator first looks for
the prediction that request may have made and resumes it (`_find_created`).
"""

from __future__ import annotations

import base64
import hashlib
import io
import random
import time
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Callable, TypeVar

import httpx
import replicate
from PIL import Image
from replicate.exceptions import ReplicateError, ReplicateException
from replicate.prediction import Prediction

from .base import GeneratedImage, GenerationError, GenerationRequest, TransientGenerationError, to_png

DEFAULT_MODEL = "flux-kontext-apps/multi-image-kontext-max"
_FINISHED = frozenset({"succeeded", "failed", "canceled"})
# What a failing API call can raise: API errors, transport errors, and ValueError for a malformed response
# (bad JSON, a prediction that does not validate).
_API_ERRORS = (ReplicateException, httpx.HTTPError, ValueError)
# Transport failures worth another try. Not the rest of httpx.TransportError: an unsupported URL scheme or a
# malformed request fails the same way every time.
_TRANSIENT_TRANSPORT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
# Pillow format -> file extension whose MIME type the API understands (MPO is a multi-picture JPEG).
_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}
# The settings that, with the prompt and the seed, recognise our prediction in the list of recent ones.
_MATCHED_INPUTS = ("prompt", "seed", "aspect_ratio", "output_format", "safety_tolerance")
# Replicate stamps created_at with its clock; ours may be a little behind or ahead.
_CLOCK_SKEW = timedelta(seconds=10)
_MAX_LIST_PAGES = 5  # 100 predictions a page: far more than an account makes while one create is retried
_SEED_LIMIT = 2**31  # seeds stay in a signed 32-bit range, which every model accepts

_T = TypeVar("_T")


class ReplicateKontextGenerator:
    def __init__(
        self,
        api_token: str,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,  # None: Replicate's default API
        aspect_ratio: str = "1:1",
        output_format: str = "png",
        safety_tolerance: int = 2,
        seed: int | None = None,  # None: a seed derived from the request, so the same request draws the same
        timeout_s: float = 300.0,  # the whole generation: create, polls, download and every retry
        poll_interval_s: float = 1.0,
        cost_per_image_usd: float = 0.08,
        max_attempts: int = 5,  # per API call (create, each poll, download)
        backoff_base_s: float = 1.0,  # first retry waits about this long, then twice as long each time
        backoff_max_s: float = 30.0,
        retry_after_cap_s: float = 60.0,  # a server's Retry-After is honoured up to this
        request_timeout_s: float = 30.0,  # one HTTP request
    ):
        if not api_token:
            raise ValueError("api_token is empty: set the Replicate API token")
        owner, _, name = model.partition("/")
        if not owner or not name or "/" in name:
            raise ValueError(f"model must be 'owner/name', got {model!r}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self._api_token = api_token  # private: never part of parameters(), details or messages
        self._owner, self._name = owner, name
        self.model = model
        self.base_url = base_url
        self.aspect_ratio = aspect_ratio
        self.output_format = output_format
        self.safety_tolerance = safety_tolerance
        self.seed = seed
        self.timeout_s = timeout_s
        self.poll_interval_s = poll_interval_s
        self.cost_per_image_usd = cost_per_image_usd
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.retry_after_cap_s = retry_after_cap_s
        self.request_timeout_s = request_timeout_s
        self.generator_id = f"replicate/{model}"
        self._client: replicate.Client | None = None  # built on first use: no network at construction

    def __repr__(self) -> str:
        return f"ReplicateKontextGenerator(model={self.model!r}, base_url={self.base_url!r})"

    def parameters(self) -> dict:
        # What changes the image. Not the token (a secret), not base_url (where, not what), not the retry
        # and timeout settings (how hard to try, not what comes out).
        return {
            "model": self.model,
            "aspect_ratio": self.aspect_ratio,
            "output_format": self.output_format,
            "safety_tolerance": self.safety_tolerance,
            "seed": self.seed,
        }

    def generate(
        self,
        request: GenerationRequest,
        on_created: Callable[[str], None] | None = None,
        resume_prediction_id: str | None = None,
    ) -> GeneratedImage:
        """One ad image from one paid prediction.

        on_created(prediction_id) is called as soon as the prediction exists: a caller that saves the id can,
        after a crash, pass it back as resume_prediction_id to finish that prediction instead of paying again.
        """
        deadline = time.monotonic() + self.timeout_s
        inputs = self._inputs(request)
        if resume_prediction_id:
            prediction = self._resume(resume_prediction_id, inputs, deadline)
        else:
            prediction = self._create_once(inputs, deadline)
            if on_created is not None:
                on_created(prediction.id)
        try:
            self._wait(prediction, deadline)
        except _TimedOut:
            self._cancel_quietly(prediction)  # so it stops costing
            raise
        if prediction.status != "succeeded":
            raise self._error(f"prediction {prediction.id} {prediction.status}: {prediction.error or 'no error text'}")
        url = _first_output_url(prediction.output)
        if url is None:
            raise self._error(f"prediction {prediction.id} succeeded without an output URL: {prediction.output!r}")
        try:
            png = to_png(self._download(url, deadline))
        except ValueError:
            raise self._error(f"prediction {prediction.id}: output is not an image ({_short(url)})") from None
        metrics = prediction.metrics or {}
        return GeneratedImage(
            png=png,
            cost_usd=self.cost_per_image_usd,
            details={
                "prediction_id": prediction.id,
                "model": self.model,
                "status": prediction.status,
                "seed": inputs["seed"],
                "output_url": _short(url),
                "predict_time": metrics.get("predict_time"),
            },
        )

    def _inputs(self, request: GenerationRequest) -> dict:
        return {
            "prompt": request.prompt,
            "input_image_1": _named_file(request.seed_image, "seed"),
            "input_image_2": _named_file(request.brand_image, "brand"),
            "aspect_ratio": self.aspect_ratio,
            "output_format": self.output_format,
            "safety_tolerance": self.safety_tolerance,
            # Always a seed: it makes the output reproducible and lets _find_created recognise the prediction.
            "seed": self.seed if self.seed is not None else _request_seed(request),
        }

    def _create_once(self, inputs: dict, deadline: float) -> Prediction:
        """Create the prediction, retrying failures, without ever paying twice for one request."""
        what = f"creating a prediction for {self.model}"
        since = datetime.now(timezone.utc) - _CLOCK_SKEW
        maybe_created = False
        attempt = 1
        while True:
            try:
                if maybe_created and (found := self._find_created(inputs, since)) is not None:
                    return found
                # base64: the images travel inside the request as data URLs, so no upload endpoint is needed.
                return self._replicate().models.predictions.create(
                    model=(self._owner, self._name), input=inputs, file_encoding_strategy="base64"
                )
            except _API_ERRORS as err:
                maybe_created = maybe_created or _may_have_created(err)
                self._pause_before_retry(what, err, attempt, deadline)
                attempt += 1

    def _find_created(self, inputs: dict, since: datetime) -> Prediction | None:
        """The prediction an unanswered create made, if the server made one.

        Replicate lists recent predictions newest first, each with its input. Ours has this model, this
        prompt, seed and settings (the seed, derived from the request's images and prompt unless set, is
        what tells two requests with one prompt apart), and was created since this generation began.
        """
        predictions = self._replicate().predictions
        page = predictions.list()
        for _ in range(_MAX_LIST_PAGES):
            for listed in page.results:
                created = _parse_time(listed.created_at)
                if created is None:
                    continue
                if created < since:
                    return None  # newest first: everything after this is older still
                if listed.model == self.model and _same_request(listed.input or {}, inputs):
                    return listed
            if not page.next:
                return None
            page = predictions.list(page.next)
        return None

    def _resume(self, prediction_id: str, inputs: dict, deadline: float) -> Prediction:
        prediction = self._retrying(
            f"resuming prediction {prediction_id}", deadline, lambda: self._replicate().predictions.get(prediction_id)
        )
        if prediction.model != self.model or not _same_request(prediction.input or {}, inputs):
            raise self._error(
                f"prediction {prediction_id} was made for another request; drop the saved id to create a new one"
            )
        return prediction

    def _wait(self, prediction: Prediction, deadline: float) -> None:
        """Poll until the prediction finishes; raises _TimedOut past the deadline."""
        while prediction.status not in _FINISHED:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._error(
                    f"prediction {prediction.id} timed out after {self.timeout_s:g}s (last status {prediction.status})",
                    _TimedOut,
                )
            time.sleep(min(self.poll_interval_s, remaining))
            self._retrying(f"polling prediction {prediction.id}", deadline, prediction.reload)

    def _cancel_quietly(self, prediction: Prediction) -> None:
        try:
            prediction.cancel()
        except _API_ERRORS:
            pass  # best effort: the timeout is the error worth reporting

    def _download(self, url: str, deadline: float) -> bytes:
        if url.startswith("data:"):  # synchronous-mode outputs can come inline
            return base64.b64decode(url.split(",", 1)[1])
        return self._retrying(f"downloading the output {_short(url)}", deadline, lambda: self._fetch(url, deadline))

    def _fetch(self, url: str, deadline: float) -> bytes:
        timeout = max(min(self.request_timeout_s, deadline - time.monotonic()), 0.001)
        response = httpx.get(url, timeout=timeout, follow_redirects=True)
        _raise_if_busy(response)
        response.raise_for_status()
        return response.content

    def _retrying(self, what: str, deadline: float, call: Callable[[], _T]) -> _T:
        attempt = 1
        while True:
            try:
                return call()
            except _API_ERRORS as err:
                self._pause_before_retry(what, err, attempt, deadline)
                attempt += 1

    def _pause_before_retry(self, what: str, err: Exception, attempt: int, deadline: float) -> None:
        """Sleep before the next attempt; raise when the error is final, the attempts are spent or time is up."""
        if not _is_transient(err):
            raise self._error(f"{what} failed: {_describe(err)}") from None
        if attempt >= self.max_attempts:
            raise self._error(f"{what} failed after {attempt} attempts: {_describe(err)}",
                              TransientGenerationError) from None
        pause = self._backoff_s(attempt, getattr(err, "retry_after_s", None))
        if time.monotonic() + pause >= deadline:
            raise self._error(
                f"{what} timed out after {self.timeout_s:g}s ({attempt} attempts, last: {_describe(err)})", _TimedOut
            ) from None
        time.sleep(pause)

    def _backoff_s(self, attempt: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return min(retry_after_s, self.retry_after_cap_s)
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        # Jitter: workers that failed together (one rate limit, one outage) come back spread out.
        return random.uniform(ceiling / 2, ceiling)

    def _replicate(self) -> replicate.Client:
        if self._client is None:
            self._client = replicate.Client(
                api_token=self._api_token,
                base_url=self.base_url,
                timeout=httpx.Timeout(min(self.request_timeout_s, self.timeout_s)),
                # The client wraps its transport in a RetryTransport that retries GETs up to 10 times and sleeps
                # whatever Retry-After says, outside our attempt bound and deadline. A mount for every URL is
                # used instead of it (proxy mounts from the environment, being more specific, still apply).
                mounts={"all://": httpx.HTTPTransport()},
                event_hooks={
                    # The client sends creates with timeout=None, which in httpx means no limit at all.
                    "request": [self._limit_unbounded_timeouts],
                    # The client's ReplicateError drops the response headers; this keeps Retry-After.
                    "response": [_raise_if_busy],
                },
            )
        return self._client

    def _limit_unbounded_timeouts(self, request: httpx.Request) -> None:
        limit = min(self.request_timeout_s, self.timeout_s)
        phases = request.extensions.get("timeout") or dict.fromkeys(("connect", "read", "write", "pool"))
        request.extensions["timeout"] = {
            phase: limit if seconds is None else seconds for phase, seconds in phases.items()
        }

    def _error(self, message: str, kind: type[GenerationError] = GenerationError) -> GenerationError:
        # Defensive: whatever a server or library echoes back, the token never leaves in a message.
        return kind(message.replace(self._api_token, "***"))


class _TimedOut(TransientGenerationError):
    """The generation's deadline passed: the prediction, if there is one, should be canceled."""


class _BusyError(ReplicateError):
    """A 429 or 5xx answer: worth another try, after retry_after_s when the server said so."""

    retry_after_s: float | None = None


def _raise_if_busy(response: httpx.Response) -> None:
    if response.status_code == 429 or response.status_code >= 500:
        response.read()  # the error body, for the message
        error = _BusyError.from_response(response)
        error.retry_after_s = _retry_after_s(response.headers.get("Retry-After"))
        raise error


def _retry_after_s(value: str | None) -> float | None:
    """Retry-After in seconds from now: delta-seconds or an HTTP date (RFC 9110); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max((when - datetime.now(timezone.utc)).total_seconds(), 0.0)


def _is_transient(err: Exception) -> bool:
    return isinstance(err, (_BusyError, *_TRANSIENT_TRANSPORT))


def _may_have_created(err: Exception) -> bool:
    """Whether a create that failed this way may still have made (and billed) a prediction."""
    if isinstance(err, _BusyError):
        return err.status != 429  # a rate limit refuses before any work; a 5xx may come after it
    # A refused connection never reached the server; a timeout or a dropped connection may have lost the answer.
    return isinstance(err, _TRANSIENT_TRANSPORT) and not isinstance(err, (httpx.ConnectError, httpx.ConnectTimeout))


def _same_request(listed_input: dict, inputs: dict) -> bool:
    return all(listed_input.get(key) == inputs[key] for key in _MATCHED_INPUTS)


def _request_seed(request: GenerationRequest) -> int:
    """A seed fixed by the request's images and prompt."""
    digest = hashlib.sha256()
    for part in (request.seed_image, request.brand_image, request.prompt.encode()):
        digest.update(hashlib.sha256(part).digest())  # hash of hashes: no two splits of the bytes collide
    return int.from_bytes(digest.digest()[:8], "big") % _SEED_LIMIT


def _parse_time(text: str | None) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text or "")
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _named_file(data: bytes, stem: str) -> io.BytesIO:
    """The bytes as a file whose name carries the real extension, so the data URL gets the right MIME type."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            image_format = img.format
    except (OSError, SyntaxError, ValueError):
        raise GenerationError(f"the {stem} image is not a decodable image") from None
    if image_format not in _EXTENSIONS:
        raise GenerationError(f"the {stem} image is {image_format}; the model accepts {', '.join(sorted(_EXTENSIONS))}")
    file = io.BytesIO(data)
    file.name = f"{stem}.{_EXTENSIONS[image_format]}"
    return file


def _first_output_url(output) -> str | None:
    if isinstance(output, list):
        output = output[0] if output else None
    return output if isinstance(output, str) and output else None


def _describe(err: Exception) -> str:
    if isinstance(err, ReplicateError):
        return " ".join(str(part) for part in (f"HTTP {err.status}:", err.title, err.detail) if part)
    return f"{type(err).__name__}: {err}"


def _short(url: str) -> str:
    """A URL fit for logs and metadata: inline data URLs are cut to their header."""
    return url.split(",", 1)[0] + ",..." if url.startswith("data:") else url
