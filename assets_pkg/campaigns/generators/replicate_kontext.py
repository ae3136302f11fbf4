"""FLUX Kontext multi-image on Replicate: the seed photo and the brand image in, one generated ad out.

Uses the official `replicate` client for the API calls; only the output download is plain httpx, because
output URLs are public CDN links that must not receive the API token.

A real image API fails in passing (429 rate limits, 5xx, dropped connections, hangs), so every call is
retried (tenacity) a bounded number of times with exponential backoff and jitter, or after Retry-After when
the server sends one, all inside one deadline per generation.

A prediction costs money once made, so none is paid for twice:
- Replicate takes no idempotency key, so a create whose answer was lost is never simply sent again: the
  generator first looks for the prediction that request may have made and resumes it (`_find_created`). It
  recognises it by what the request carried (model, prompt, seed, settings, and the images' digests where the
  listing echoes them) among those created since the first create was sent, by the server's clock.
- A failure after the prediction was made (output download failed, output not an image, the deadline passed
  while it ran) raises a GenerationError with `resumable=True` and its `prediction_id`: a caller that keeps the
  id passes it back as resume_prediction_id and collects the output without paying again.
- A resumed prediction is dropped, and a new one made, when there is nothing left to collect from it: it
  failed or was canceled (its verdict was never reported: the run that made it ended first), Replicate does not
  know it, or its output is gone (the URL answers 404/410, or there is none) and it finished at least
  `output_retention_s` ago. Replicate removes an API prediction's output after about an hour; the age is
  measured on the server's clock (its `completed_at`, else `created_at`, against the API's Date header), never
  this machine's. A gone output on a younger prediction is a passing fault: the id is kept for the next run.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Callable, NoReturn, TypeVar

import httpx
import replicate
from PIL import Image
from replicate.exceptions import ReplicateError, ReplicateException
from replicate.prediction import Prediction
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
    wait_random_exponential,
)
from tenacity.wait import wait_base

from .base import GeneratedImage, GenerationError, GenerationRequest, TransientGenerationError, to_png

DEFAULT_MODEL = "flux-kontext-apps/multi-image-kontext-max"
DEFAULT_TIMEOUT_S = 300.0  # the whole generation: create, polls, download and every retry
DEFAULT_MAX_ATTEMPTS = 5  # per API call (create, each poll, download)
_FINISHED = frozenset({"succeeded", "failed", "canceled"})
# What a failing API call can raise: API errors, transport errors, and ValueError for a malformed response
# (bad JSON, a prediction that does not validate).
_API_ERRORS = (ReplicateException, httpx.HTTPError, ValueError)
# Transport failures worth another try. Not the rest of httpx.TransportError: an unsupported URL scheme or a
# malformed request fails the same way every time.
_TRANSIENT_TRANSPORT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
# Pillow format -> file extension whose MIME type the API understands (MPO is a multi-picture JPEG).
_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}
# The plain JSON inputs that, with the model and the images, are the request: a listed prediction is ours only
# when all of them are equal.
_MATCHED_INPUTS = ("prompt", "seed", "aspect_ratio", "output_format", "safety_tolerance")
_IMAGE_INPUTS = ("input_image_1", "input_image_2")
# How much earlier than our first create, by the server's clock, the lookup still looks: Date has a resolution
# of one second, and Date and created_at are stamped by different machines of Replicate's.
_SERVER_CLOCK_SLACK = timedelta(seconds=5)
# A download answered with one of these: the output is not (or no longer) there.
_GONE = frozenset({404, 410})
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
        timeout_s: float = DEFAULT_TIMEOUT_S,
        poll_interval_s: float = 1.0,
        cost_per_image_usd: float = 0.08,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff_base_s: float = 1.0,  # first retry waits about this long, then twice as long each time
        backoff_max_s: float = 30.0,
        retry_after_cap_s: float = 60.0,  # a server's Retry-After is honoured up to this
        request_timeout_s: float = 30.0,  # one HTTP request
        output_retention_s: float = 3600.0,  # how long Replicate keeps an API prediction's output
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
        self.output_retention_s = output_retention_s
        self.generator_id = f"replicate/{model}"
        self._client: replicate.Client | None = None  # built on first use: no network at construction
        # The server's clock as last read from an API answer's Date header, per thread: one generator may serve
        # several threads, and each needs the reading of its own last request.
        self._server_clock = threading.local()

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

        on_created(prediction_id) is called as soon as a prediction exists: a caller that saves the id can, after
        a crash or a GenerationError with `resumable` set, pass it back as resume_prediction_id to finish that
        prediction instead of paying again. A caller that keeps the id this way also gets a prediction that runs
        past the deadline left running, to collect next time; without on_created nobody will come back for it,
        so it is canceled to stop its cost.
        """
        deadline = time.monotonic() + self.timeout_s
        inputs = self._inputs(request)
        key = _RequestKey.of(self.model, inputs, request, seed_from_request=self.seed is None)
        prediction = self._resume(resume_prediction_id, key, deadline) if resume_prediction_id else None
        if prediction is None:  # nothing to resume, or nothing left to collect from it
            prediction = self._create(inputs, key, deadline, on_created)
        resumed = prediction.id == resume_prediction_id
        try:
            png, url = self._collect(prediction, deadline, kept=on_created is not None or resumed, resumed=resumed)
        except _Expired:  # the resumed prediction's output is gone for good: one new prediction replaces it
            prediction = self._create(inputs, key, deadline, on_created)
            png, url = self._collect(prediction, deadline, kept=on_created is not None, resumed=False)
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

    def _create(self, inputs: dict, key: _RequestKey, deadline: float,
                on_created: Callable[[str], None] | None) -> Prediction:
        prediction = self._create_once(inputs, key, deadline)
        if on_created is not None:
            on_created(prediction.id)
        return prediction

    def _create_once(self, inputs: dict, key: _RequestKey, deadline: float) -> Prediction:
        """Create the prediction, retrying failures, without ever paying twice for one request."""
        started = time.monotonic()  # before the first create is sent: where the lookup's window opens
        maybe_created = False

        def attempt() -> Prediction:
            nonlocal maybe_created
            # Never a second create after one that may have made a prediction without first looking for it.
            if maybe_created and (found := self._find_created(key, started)) is not None:
                return found
            try:
                # base64: the images travel inside the request as data URLs, so no upload endpoint is needed.
                return self._replicate().models.predictions.create(
                    model=(self._owner, self._name), input=inputs, file_encoding_strategy="base64"
                )
            except _API_ERRORS as err:
                maybe_created = maybe_created or _may_have_created(err)
                raise

        return self._retrying(f"creating a prediction for {self.model}", deadline, attempt)

    def _find_created(self, key: _RequestKey, started: float) -> Prediction | None:
        """The prediction an unanswered create made, if the server made one.

        Replicate lists recent predictions newest first, each with its input. Ours is the one this request made
        (`_RequestKey.matches`) created since the first create was sent. That moment is read on the server's
        clock, never this machine's: the list answer's Date header (or, without one, the newest listed
        created_at, which is no later than the server's now) less the time since the first create by the local
        monotonic clock. A client clock off by an hour thus neither misses its prediction nor adopts an older
        one.
        """
        predictions = self._replicate().predictions
        page = predictions.list()
        listed_times = [created for listed in page.results if (created := _parse_time(listed.created_at))]
        anchors = [*listed_times, *filter(None, [self._server_now()])]
        if not anchors:
            return None  # an empty list and no Date: nothing was made
        since = max(anchors) - timedelta(seconds=time.monotonic() - started) - _SERVER_CLOCK_SLACK
        for _ in range(_MAX_LIST_PAGES):
            for listed in page.results:
                created = _parse_time(listed.created_at)
                if created is None:
                    continue
                if created < since:
                    return None  # newest first: everything after this is older still
                if key.matches(listed, strict=True):
                    return listed
            if not page.next:
                return None
            page = predictions.list(page.next)
        return None

    def _resume(self, prediction_id: str, key: _RequestKey, deadline: float) -> Prediction | None:
        """The saved prediction, to finish; None when there is nothing left to collect from it.

        Its output may still be gone (see _collect): that is only known by trying to fetch it.
        """
        def get() -> Prediction | None:
            try:
                return self._replicate().predictions.get(prediction_id)
            except ReplicateError as err:
                if err.status == 404:
                    return None  # this account has no such prediction: nothing to collect
                raise

        try:
            prediction = self._retrying(f"resuming prediction {prediction_id}", deadline, get)
        except GenerationError as err:
            # The API could not be asked; the prediction may well be there: keep its id for the next run.
            err.prediction_id, err.resumable = prediction_id, True
            raise
        if prediction is None or prediction.status in ("failed", "canceled"):
            return None
        # Strict would refuse a prediction whose input Replicate removed; its id is ours (saved for this very
        # request), so only an input that says otherwise refuses it.
        if not key.matches(prediction, strict=False):
            err = self._error(
                f"prediction {prediction_id} was made for another request; drop the saved id to create a new one",
                _Final,
            )
            err.prediction_id = prediction_id  # not resumable: the caller drops it
            raise err
        return prediction

    def _collect(self, prediction: Prediction, deadline: float, kept: bool, resumed: bool) -> tuple[bytes, str]:
        """Wait for the prediction, then download its output as PNG; returns (png, output URL).

        Every failure here comes after the prediction was paid for. Unless the prediction itself failed, was
        canceled or succeeded without output (_Final), or was canceled here, its output can still be collected,
        so the error is marked resumable and carries the prediction's id. Raises _Expired when a resumed
        prediction's output is gone for good.
        """
        canceled = False
        try:
            try:
                self._wait(prediction, deadline)
            except _TimedOut:
                if not kept:
                    self._cancel_quietly(prediction)  # nobody will come back for it: it stops costing
                    canceled = True
                raise
            if prediction.status != "succeeded":
                raise self._error(
                    f"prediction {prediction.id} {prediction.status}: {prediction.error or 'no error text'}", _Final
                )
            url = _first_output_url(prediction.output)
            if url is None:
                if resumed and self._expired(prediction):
                    raise _Expired
                raise self._error(
                    f"prediction {prediction.id} succeeded without an output URL: {prediction.output!r}", _Final
                )
            try:
                data = self._download(url, deadline)
            except _OutputGone as gone:
                if resumed and self._expired(prediction):
                    raise _Expired from None
                raise self._error(f"downloading the output {_short(url)} failed: {gone}") from None
            try:
                return to_png(data), url
            except ValueError:
                raise self._error(f"prediction {prediction.id}: output is not an image ({_short(url)})") from None
        except GenerationError as err:
            err.prediction_id = prediction.id
            err.resumable = not canceled and not isinstance(err, _Final)
            raise

    def _expired(self, prediction: Prediction) -> bool:
        """Whether the prediction finished at least output_retention_s ago, by the server's clock.

        When that cannot be told (no Date header, no timestamps) it counts as expired: holding on to an id
        whose output is gone would fail every run, while a new prediction costs once.
        """
        finished = _parse_time(prediction.completed_at) or _parse_time(prediction.created_at)
        now = self._server_now()
        if finished is None or now is None:
            return True
        return now - finished >= timedelta(seconds=self.output_retention_s)

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
        if response.status_code in _GONE:  # not an API error: whether it is for good depends on the prediction
            raise _OutputGone(f"HTTP {response.status_code} {response.reason_phrase}")
        response.raise_for_status()
        return response.content

    def _retrying(self, what: str, deadline: float, call: Callable[[], _T]) -> _T:
        """call() until it succeeds; transient errors are retried within max_attempts and the deadline.

        Raises GenerationError for a final error (at once), TransientGenerationError once the attempts are
        spent, and _TimedOut when the next pause would end past the deadline. Exceptions that are no API error
        (_OutputGone) pass through untouched.
        """

        def give_up(state: RetryCallState) -> NoReturn:
            err = state.outcome.exception()
            attempts = state.attempt_number
            if attempts >= self.max_attempts:
                raise self._error(f"{what} failed after {attempts} attempts: {_describe(err)}",
                                  TransientGenerationError)
            raise self._error(
                f"{what} timed out after {self.timeout_s:g}s ({attempts} attempts, last: {_describe(err)})", _TimedOut
            )

        retrying = Retrying(
            retry=retry_if_exception(_is_transient),
            # stop_before_delay: no pause that would end past the deadline (tenacity measures from this moment).
            stop=stop_after_attempt(self.max_attempts) | stop_before_delay(deadline - time.monotonic()),
            wait=_wait_retry_after(self.retry_after_cap_s, _equal_jitter(self.backoff_base_s, self.backoff_max_s)),
            retry_error_callback=give_up,
        )
        try:
            return retrying(call)
        except _API_ERRORS as err:  # not transient: another try would fail the same way
            raise self._error(f"{what} failed: {_describe(err)}") from None

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
                    # The server's clock first (error answers carry it too); then, because the client's
                    # ReplicateError drops the response headers, a busy answer is raised here with Retry-After.
                    "response": [self._read_server_clock, _raise_if_busy],
                },
            )
        return self._client

    def _read_server_clock(self, response: httpx.Response) -> None:
        server_time = _http_date(response.headers.get("Date"))
        if server_time is not None:
            self._server_clock.reading = (server_time, time.monotonic())

    def _server_now(self) -> datetime | None:
        """The server's clock now: its last Date header plus the time since, by the local monotonic clock."""
        reading = getattr(self._server_clock, "reading", None)
        if reading is None:
            return None
        server_time, read_at = reading
        return server_time + timedelta(seconds=time.monotonic() - read_at)

    def _limit_unbounded_timeouts(self, request: httpx.Request) -> None:
        limit = min(self.request_timeout_s, self.timeout_s)
        phases = request.extensions.get("timeout") or dict.fromkeys(("connect", "read", "write", "pool"))
        request.extensions["timeout"] = {
            phase: limit if seconds is None else seconds for phase, seconds in phases.items()
        }

    def _error(self, message: str, kind: type[GenerationError] = GenerationError) -> GenerationError:
        # Defensive: whatever a server or library echoes back, the token never leaves in a message.
        return kind(message.replace(self._api_token, "***"))


@dataclass(frozen=True)
class _RequestKey:
    """What one request carried, to recognise the prediction it made among others."""

    model: str
    settings: dict  # the plain JSON inputs (_MATCHED_INPUTS), as sent
    image_digests: dict  # input name -> sha256 of the image bytes sent as its data URL
    seed_from_request: bool  # the seed was derived from the images and the prompt, so it stands for them

    @classmethod
    def of(cls, model: str, inputs: dict, request: GenerationRequest, seed_from_request: bool) -> _RequestKey:
        images = dict(zip(_IMAGE_INPUTS, (request.seed_image, request.brand_image)))
        return cls(model=model, settings={key: inputs[key] for key in _MATCHED_INPUTS},
                   image_digests={name: hashlib.sha256(data).hexdigest() for name, data in images.items()},
                   seed_from_request=seed_from_request)

    def matches(self, prediction: Prediction, strict: bool) -> bool:
        """Whether the prediction was made for this request.

        The images come back as the data URLs they were sent as, or not at all (Replicate keeps no copy of a
        data URL's file for the listing, and removes every input after an hour). An image that is not there to
        compare is accepted only when the seed stands for it; with a seed fixed by configuration, two requests
        differing only in their images would be told apart by nothing, and adopting another request's
        prediction would store the wrong ad under this request's key: paying again is the lesser harm.

        strict=False (resuming a saved id, which names this request's prediction): an input that is missing
        does not refuse it, only one that differs.
        """
        if prediction.model != self.model:
            return False
        listed = prediction.input or {}
        for name, value in self.settings.items():
            if (name in listed or strict) and listed.get(name) != value:
                return False
        for name, digest in self.image_digests.items():
            sent = _data_url_digest(listed.get(name))
            if sent is None:
                if strict and not self.seed_from_request:
                    return False
            elif sent != digest:
                return False
        return True


class _TimedOut(TransientGenerationError):
    """The generation's deadline passed: a running prediction is canceled unless the caller keeps its id."""


class _Final(GenerationError):
    """The prediction itself ended with nothing to collect (failed, canceled, no output) or is not ours."""


class _Expired(Exception):
    """A resumed prediction's output is gone for good: a new prediction has to be made."""


class _OutputGone(Exception):
    """The output URL answered 404 or 410."""


class _wait_retry_after(wait_base):
    """Wait what the server's Retry-After said, up to cap_s, when it said something; else `otherwise`."""

    def __init__(self, cap_s: float, otherwise: wait_base):
        self.cap_s = cap_s
        self.otherwise = otherwise

    def __call__(self, retry_state: RetryCallState) -> float:
        retry_after_s = getattr(retry_state.outcome.exception(), "retry_after_s", None)
        if retry_after_s is not None:
            return min(retry_after_s, self.cap_s)
        return self.otherwise(retry_state)


def _equal_jitter(base_s: float, max_s: float) -> wait_base:
    """Between half and all of min(max_s, base_s * 2**(attempt - 1)): the half that is fixed keeps the backoff
    growing, the random half spreads workers that failed together (one rate limit, one outage)."""
    return wait_exponential(multiplier=base_s / 2, max=max_s / 2) + wait_random_exponential(
        multiplier=base_s / 2, max=max_s / 2
    )


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
    when = _http_date(value)
    # Local clock: the server meant "at this time of mine", and an offset clock only shortens or lengthens a
    # pause that is capped anyway.
    return None if when is None else max((when - datetime.now(timezone.utc)).total_seconds(), 0.0)


def _http_date(value: str | None) -> datetime | None:
    """An HTTP date (Date, Retry-After) as an aware datetime; None when absent or unreadable."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _is_transient(err: Exception) -> bool:
    return isinstance(err, (_BusyError, *_TRANSIENT_TRANSPORT))


def _may_have_created(err: Exception) -> bool:
    """Whether a create that failed this way may still have made (and billed) a prediction."""
    if isinstance(err, _BusyError):
        return err.status != 429  # a rate limit refuses before any work; a 5xx may come after it
    # A refused connection never reached the server; a timeout or a dropped connection may have lost the answer.
    return isinstance(err, _TRANSIENT_TRANSPORT) and not isinstance(err, (httpx.ConnectError, httpx.ConnectTimeout))


def _data_url_digest(value) -> str | None:
    """sha256 of the bytes inside a base64 data URL; None for anything else (absent, a URL, malformed)."""
    if not isinstance(value, str) or not value.startswith("data:"):
        return None
    header, _, encoded = value.partition(",")
    if not header.endswith(";base64"):
        return None
    try:
        return hashlib.sha256(base64.b64decode(encoded, validate=True)).hexdigest()
    except (binascii.Error, ValueError):
        return None


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
