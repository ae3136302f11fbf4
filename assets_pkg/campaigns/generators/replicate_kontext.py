"""FLUX Kontext multi-image on Replicate: the seed photo and the brand image in, one generated ad out.

Uses the official `replicate` client for the API calls; only the output download is plain httpx, because
output URLs are public CDN links that must not receive the API token.
"""

from __future__ import annotations

import base64
import io
import time

import httpx
import replicate
from PIL import Image
from replicate.exceptions import ReplicateError, ReplicateException

from .base import GeneratedImage, GenerationError, GenerationRequest, to_png

DEFAULT_MODEL = "flux-kontext-apps/multi-image-kontext-max"
_FINISHED = frozenset({"succeeded", "failed", "canceled"})
_DOWNLOAD_TIMEOUT_S = 60.0
# What a failing API call can raise: API errors, transport errors, and ValueError for a malformed response
# (bad JSON, a prediction that does not validate).
_API_ERRORS = (ReplicateException, httpx.HTTPError, ValueError)
# Pillow format -> file extension whose MIME type the API understands (MPO is a multi-picture JPEG).
_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}


class ReplicateKontextGenerator:
    def __init__(
        self,
        api_token: str,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,  # None: Replicate's default API
        aspect_ratio: str = "1:1",
        output_format: str = "png",
        safety_tolerance: int = 2,
        seed: int | None = None,
        timeout_s: float = 300.0,
        poll_interval_s: float = 1.0,
        cost_per_image_usd: float = 0.08,
    ):
        if not api_token:
            raise ValueError("api_token is empty: set the Replicate API token")
        owner, _, name = model.partition("/")
        if not owner or not name or "/" in name:
            raise ValueError(f"model must be 'owner/name', got {model!r}")
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
        self.generator_id = f"replicate/{model}"
        self._client: replicate.Client | None = None  # built on first use: no network at construction

    def __repr__(self) -> str:
        return f"ReplicateKontextGenerator(model={self.model!r}, base_url={self.base_url!r})"

    def parameters(self) -> dict:
        # What changes the image. Not the token (a secret) and not base_url (where, not what).
        return {
            "model": self.model,
            "aspect_ratio": self.aspect_ratio,
            "output_format": self.output_format,
            "safety_tolerance": self.safety_tolerance,
            "seed": self.seed,
        }

    def generate(self, request: GenerationRequest) -> GeneratedImage:
        prediction = self._create(request)
        self._wait(prediction)
        if prediction.status != "succeeded":
            raise self._error(f"prediction {prediction.id} {prediction.status}: {prediction.error or 'no error text'}")
        url = _first_output_url(prediction.output)
        if url is None:
            raise self._error(f"prediction {prediction.id} succeeded without an output URL: {prediction.output!r}")
        try:
            png = to_png(self._download(url))
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
                "output_url": _short(url),
                "predict_time": metrics.get("predict_time"),
            },
        )

    def _create(self, request: GenerationRequest):
        inputs = {
            "prompt": request.prompt,
            "input_image_1": _named_file(request.seed_image, "seed"),
            "input_image_2": _named_file(request.brand_image, "brand"),
            "aspect_ratio": self.aspect_ratio,
            "output_format": self.output_format,
            "safety_tolerance": self.safety_tolerance,
        }
        if self.seed is not None:
            inputs["seed"] = self.seed
        try:
            # base64: the images travel inside the request as data URLs, so no upload endpoint is needed.
            return self._replicate().models.predictions.create(
                model=(self._owner, self._name), input=inputs, file_encoding_strategy="base64"
            )
        except _API_ERRORS as err:
            raise self._error(f"creating a prediction for {self.model} failed: {_describe(err)}") from None

    def _wait(self, prediction) -> None:
        """Poll until the prediction finishes; past timeout_s, cancel it (so it stops costing) and fail."""
        deadline = time.monotonic() + self.timeout_s
        while prediction.status not in _FINISHED:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._cancel_quietly(prediction)
                raise self._error(
                    f"prediction {prediction.id} timed out after {self.timeout_s:g}s (last status {prediction.status})"
                )
            time.sleep(min(self.poll_interval_s, remaining))
            try:
                prediction.reload()
            except _API_ERRORS as err:
                raise self._error(f"polling prediction {prediction.id} failed: {_describe(err)}") from None

    def _cancel_quietly(self, prediction) -> None:
        try:
            prediction.cancel()
        except _API_ERRORS:
            pass  # best effort: the timeout is the error worth reporting

    def _download(self, url: str) -> bytes:
        if url.startswith("data:"):  # synchronous-mode outputs can come inline
            return base64.b64decode(url.split(",", 1)[1])
        try:
            response = httpx.get(url, timeout=_DOWNLOAD_TIMEOUT_S, follow_redirects=True)
            response.raise_for_status()
        except httpx.HTTPError as err:
            raise self._error(f"downloading the output {_short(url)} failed: {_describe(err)}") from None
        return response.content

    def _replicate(self) -> replicate.Client:
        if self._client is None:
            self._client = replicate.Client(api_token=self._api_token, base_url=self.base_url)
        return self._client

    def _error(self, message: str) -> GenerationError:
        # Defensive: whatever a server or library echoes back, the token never leaves in a message.
        return GenerationError(message.replace(self._api_token, "***"))


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
