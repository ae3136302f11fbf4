"""A local stand-in for Replicate's predictions API, so tests drive the real `replicate` client over HTTP.

    with ReplicateStandIn(outcome="failed", error_message="NSFW") as api:
        generator = ReplicateKontextGenerator(api_token="t", base_url=api.base_url)

It speaks the endpoints the client uses (paths and JSON as in the client's source, replicate 1.0.x):
POST /v1/models/{owner}/{name}/predictions, GET /v1/predictions (newest first, like Replicate's list),
GET /v1/predictions/{id}, POST /v1/predictions/{id}/cancel, and serves outputs at GET /files/{id}.png like
Replicate's CDN (no auth).

It can also misbehave the way a real image API does, request by request (see StandInKnobs):

    ReplicateStandIn(create_faults=[429, LOST], poll_faults=[503], retry_after="1")

Its clock can be set apart from the client's (`clock_skew_s`) and moved on (`advance_clock`): created_at,
completed_at and every answer's Date header read it, and outputs older than `output_retention_s` on it are
removed, as Replicate removes an API prediction's data after an hour.

`created` lists every prediction the server made, so its length is what the account paid for, including
predictions whose create answer was lost on the way back.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlsplit

from PIL import Image

_CREATE = re.compile(r"^/v1/models/([^/]+)/([^/]+)/predictions$")
_LIST = re.compile(r"^/v1/predictions$")
_GET = re.compile(r"^/v1/predictions/([^/]+)$")
_CANCEL = re.compile(r"^/v1/predictions/([^/]+)/cancel$")
_FILE = re.compile(r"^/files/([^/]+)\.png$")
_OUTPUT_SIZE = (256, 256)

LOST = "lost"  # do the work (a create makes and bills a prediction), then close the connection unanswered
HANG = "hang"  # hold the connection open without answering for hang_s, doing nothing


@dataclass
class StandInKnobs:
    """How the fake model and its API behave.

    Each *_faults list is spent in order, one entry per request to that endpoint; once it is empty the
    endpoint behaves. An entry is an HTTP status code (answered without doing the work), LOST, HANG, or None
    (behave for this request).
    """

    outcome: str = "succeeded"  # "succeeded" | "failed" | "canceled"
    polls_before_done: int = 1  # GETs answered "processing" before the outcome
    seconds_before_done: float = 0.0  # and at least this long after creation: a slow model
    error_message: str = "stand-in model error"
    create_faults: list[int | str | None] = field(default_factory=list)  # POST .../predictions
    poll_faults: list[int | str | None] = field(default_factory=list)  # GET /v1/predictions/{id}
    list_faults: list[int | str | None] = field(default_factory=list)  # GET /v1/predictions
    download_faults: list[int | str | None] = field(default_factory=list)  # GET /files/{id}.png
    retry_after: str | None = None  # Retry-After header sent with every fault status answer
    hang_s: float = 5.0  # how long a HANG holds the connection (leaving the `with` block ends it sooner)
    answer_delay_s: float = 0.0  # every answer waits this long: a slow but healthy server
    output_body: bytes | None = None  # served at the output URL instead of the generated PNG
    clock_skew_s: float = 0.0  # the server's clock minus the client's: created_at, completed_at and Date
    output_retention_s: float | None = None  # after this long past completion (server clock), data is removed
    # Whether predictions are listed and fetched with their image inputs as sent (data URLs). False: each comes
    # back as a URL of the server's own, so the client cannot compare the images it sent.
    echo_file_inputs: bool = True


@dataclass
class _Prediction:
    id: str
    model: str
    input: dict
    created_s: float  # server clock (epoch seconds)
    created: float = field(default_factory=time.monotonic)
    status: str = "starting"
    polls: int = 0
    finished: float | None = None  # monotonic time it reached a terminal status
    completed_s: float | None = None  # server clock

    def finish(self, status: str, now_s: float) -> None:
        self.status = status
        self.finished = time.monotonic()
        self.completed_s = now_s


class ReplicateStandIn:
    def __init__(self, knobs: StandInKnobs | None = None, **knob_values):
        self.knobs = knobs or StandInKnobs(**knob_values)
        self.created: list[dict] = []  # {"model": "owner/name", "path": ..., "body": ..., "input": ...}: paid
        self.attempts: Counter[str] = Counter()  # requests seen per endpoint: create, poll, list, download
        self.auth_headers: list[str | None] = []  # Authorization of every API request
        self.download_auth_headers: list[str | None] = []  # Authorization of every file download
        self.canceled: list[str] = []
        self.served: dict[str, bytes] = {}  # prediction id -> the PNG bytes served for it
        self.polls = 0  # polls answered (faults not counted)
        self._predictions: dict[str, _Prediction] = {}
        self._advanced_s = 0.0  # advance_clock's total
        self._faults = {
            "create": list(self.knobs.create_faults),
            "poll": list(self.knobs.poll_faults),
            "list": list(self.knobs.list_faults),
            "download": list(self.knobs.download_faults),
        }
        self._lock = threading.Lock()
        self._closing = threading.Event()  # ends HANGs when the test leaves the `with` block
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.standin = self  # type: ignore[attr-defined]
        # A short poll interval so leaving the `with` block (shutdown) takes milliseconds, not half a second.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def paid(self) -> int:
        """Predictions the server made: what a real account would be billed for."""
        return len(self.created)

    def __enter__(self) -> ReplicateStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def server_time(self) -> float:
        """The server's clock, in epoch seconds."""
        return time.time() + self.knobs.clock_skew_s + self._advanced_s

    def advance_clock(self, seconds: float) -> None:
        """Time passes on the server (for retention): a test need not sleep an hour."""
        with self._lock:
            self._advanced_s += seconds

    def backdate(self, prediction_id: str, seconds: float) -> None:
        """The prediction was made (and finished) `seconds` earlier than it was."""
        with self._lock:
            prediction = self._predictions[prediction_id]
            prediction.created_s -= seconds
            if prediction.completed_s is not None:
                prediction.completed_s -= seconds

    def finish(self, prediction_id: str, status: str) -> None:
        """Ends a prediction from outside (a cancel on the website, a model failure) without a request."""
        with self._lock:
            self._predictions[prediction_id].finish(status, self.server_time())

    # -- behaviour, called by the handler under the lock --------------------------------------------

    def peak_in_flight(self) -> int:
        """The most predictions that were running at the same moment (created, not yet finished)."""
        edges = sorted([(p.created, 1) for p in self._predictions.values()]
                       + [(p.finished, -1) for p in self._predictions.values() if p.finished is not None])
        running = peak = 0
        for _, step in edges:
            running += step
            peak = max(peak, running)
        return peak

    def _next_fault(self, endpoint: str) -> int | str | None:
        self.attempts[endpoint] += 1
        faults = self._faults[endpoint]
        return faults.pop(0) if faults else None

    def _create(self, owner: str, name: str, body: dict) -> tuple[int, dict]:
        if not isinstance(body.get("input"), dict) or not body["input"].get("prompt"):
            return 422, {"title": "Input validation failed", "detail": "input.prompt is required", "status": 422}
        prediction = _Prediction(id=f"p{len(self._predictions) + 1:04d}", model=f"{owner}/{name}", input=body["input"],
                                 created_s=self.server_time())
        self._predictions[prediction.id] = prediction
        self.created.append(
            {"model": prediction.model, "path": f"/v1/models/{owner}/{name}/predictions", "body": body, "input": body["input"]}
        )
        return 201, self._json(prediction)

    def _list(self) -> tuple[int, dict]:
        newest_first = sorted(self._predictions.values(), key=lambda p: (p.created_s, p.id), reverse=True)
        return 200, {"next": None, "previous": None, "results": [self._json(p) for p in newest_first]}

    def _poll(self, prediction_id: str) -> tuple[int, dict]:
        prediction = self._predictions.get(prediction_id)
        if prediction is None:
            return 404, {"detail": "Not found.", "status": 404}
        self.polls += 1
        prediction.polls += 1
        if prediction.status in ("starting", "processing"):
            waited = time.monotonic() - prediction.created
            done = prediction.polls > self.knobs.polls_before_done and waited >= self.knobs.seconds_before_done
            if done:
                prediction.finish(self.knobs.outcome, self.server_time())
            else:
                prediction.status = "processing"
        return 200, self._json(prediction)

    def _cancel(self, prediction_id: str) -> tuple[int, dict]:
        prediction = self._predictions.get(prediction_id)
        if prediction is None:
            return 404, {"detail": "Not found.", "status": 404}
        self.canceled.append(prediction_id)
        if prediction.status in ("starting", "processing"):
            prediction.finish("canceled", self.server_time())
        return 200, self._json(prediction)

    def _output(self, prediction_id: str) -> bytes | None:
        prediction = self._predictions.get(prediction_id)
        if prediction is None or prediction.status != "succeeded" or self._data_removed(prediction):
            return None
        if self.knobs.output_body is not None:
            return self.knobs.output_body
        if prediction_id not in self.served:
            self.served[prediction_id] = _blend_inputs(prediction.input)
        return self.served[prediction_id]

    def _data_removed(self, prediction: _Prediction) -> bool:
        retention = self.knobs.output_retention_s
        return (retention is not None and prediction.completed_s is not None
                and self.server_time() - prediction.completed_s >= retention)

    def _json(self, prediction: _Prediction) -> dict:
        succeeded = prediction.status == "succeeded"
        removed = self._data_removed(prediction)
        urls = f"{self.base_url}/v1/predictions/{prediction.id}"
        inputs = {} if removed else dict(prediction.input)
        if not self.knobs.echo_file_inputs:
            for name, value in inputs.items():
                if isinstance(value, str) and value.startswith("data:"):
                    inputs[name] = f"{self.base_url}/inputs/{prediction.id}/{name}"  # not served
        return {
            "id": prediction.id,
            "model": prediction.model,
            "version": "hidden",  # what Replicate reports for official models
            "status": prediction.status,
            "input": inputs,
            "output": f"{self.base_url}/files/{prediction.id}.png" if succeeded and not removed else None,
            "error": self.knobs.error_message if prediction.status == "failed" else None,
            "logs": "",
            "metrics": {"predict_time": 0.01} if succeeded else {},
            "created_at": _timestamp(prediction.created_s),
            "started_at": _timestamp(prediction.created_s) if prediction.status != "starting" else None,
            "completed_at": _timestamp(prediction.completed_s) if prediction.completed_s is not None else None,
            "data_removed": removed,
            "urls": {"get": urls, "cancel": f"{urls}/cancel"},
        }


def _timestamp(epoch_s: float) -> str:
    """An ISO 8601 UTC timestamp as Replicate writes them: microseconds and a Z."""
    when = datetime.fromtimestamp(epoch_s, timezone.utc)
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _blend_inputs(inputs: dict) -> bytes:
    """A real PNG that depends on both input images: their 50/50 blend."""
    first, second = (_decode_data_url(inputs[key]).resize(_OUTPUT_SIZE) for key in ("input_image_1", "input_image_2"))
    out = io.BytesIO()
    Image.blend(first, second, 0.5).save(out, format="PNG")
    return out.getvalue()


def _decode_data_url(url: str) -> Image.Image:
    _, encoded = url.split(",", 1)
    return Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB")


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        standin: ReplicateStandIn = self.server.standin  # type: ignore[attr-defined]
        if not self._authorised(standin):
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if match := _CREATE.match(self.path):
            self._answer("create", lambda: standin._create(*match.groups(), json.loads(raw or b"{}")))
        elif match := _CANCEL.match(self.path):
            self._answer(None, lambda: standin._cancel(match.group(1)))
        else:
            self._send_json(404, {"detail": "Not found.", "status": 404})

    def do_GET(self) -> None:
        standin: ReplicateStandIn = self.server.standin  # type: ignore[attr-defined]
        path = urlsplit(self.path).path
        if match := _FILE.match(path):
            with standin._lock:
                standin.download_auth_headers.append(self.headers.get("Authorization"))
            self._answer("download", lambda: _file_answer(standin._output(match.group(1))))
            return
        if not self._authorised(standin):
            return
        if _LIST.match(path):
            self._answer("list", standin._list)
        elif match := _GET.match(path):
            self._answer("poll", lambda: standin._poll(match.group(1)))
        else:
            self._send_json(404, {"detail": "Not found.", "status": 404})

    def _answer(self, endpoint: str | None, work: Callable[[], tuple[int, dict | bytes]]) -> None:
        """The one place the knobs apply: the endpoint's next fault, else the work and its answer."""
        standin: ReplicateStandIn = self.server.standin  # type: ignore[attr-defined]
        knobs = standin.knobs
        with standin._lock:
            fault = standin._next_fault(endpoint) if endpoint else None
        if fault == HANG:
            standin._closing.wait(knobs.hang_s)  # outside the lock: other requests go on meanwhile
            self.close_connection = True
            return
        if isinstance(fault, int):
            headers = {"Retry-After": knobs.retry_after} if knobs.retry_after is not None else {}
            problem = {"title": "Stand-in fault", "detail": f"injected HTTP {fault}", "status": fault}
            self._send_json(fault, problem, headers)
            return
        time.sleep(knobs.answer_delay_s)
        with standin._lock:
            status, body = work()
        if fault == LOST:
            self.close_connection = True  # the work is done; the client never hears about it
            return
        if isinstance(body, bytes):
            self._send(status, body, "image/png" if status == 200 else "text/plain")
        else:
            self._send_json(status, body)

    def _authorised(self, standin: ReplicateStandIn) -> bool:
        header = self.headers.get("Authorization")
        with standin._lock:
            standin.auth_headers.append(header)
        if header and header.startswith("Bearer ") and len(header) > len("Bearer "):
            return True
        self._send_json(401, {"title": "Unauthenticated", "detail": "You did not pass an authentication token", "status": 401})
        return False

    def _send_json(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The Date header of every answer (send_response writes it), on the server's possibly skewed clock.
        standin: ReplicateStandIn = self.server.standin  # type: ignore[attr-defined]
        return formatdate(standin.server_time() if timestamp is None else timestamp, usegmt=True)

    def log_message(self, format: str, *args) -> None:
        pass  # keep test output clean


def _file_answer(data: bytes | None) -> tuple[int, bytes]:
    return (404, b"not found") if data is None else (200, data)
