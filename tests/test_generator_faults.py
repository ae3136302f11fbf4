"""The Replicate generator against the faults a real image API has, one test per fault kind.

The real `replicate` client talks real HTTP to the local stand-in, which injects the fault. Each test checks the
outcome and what the account paid for (`api.paid`: predictions the server made), since a retry that creates
a second prediction costs real money. Backoff, timeouts and polling are tiny so the file runs in seconds.
"""

from __future__ import annotations

import base64
import io
import time

import pytest
from PIL import Image
from replicate_standin import HANG, LOST, ReplicateStandIn

from assets_pkg.campaigns.generators.base import GenerationError, GenerationRequest
from assets_pkg.campaigns.generators.replicate_kontext import ReplicateKontextGenerator

TOKEN = "r8_fault-test-token-must-never-leak-0123456789"
PROMPT = "Put the brand logo from image 2 on the dog's bandana in image 1"


def _png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(out, format="PNG")
    return out.getvalue()


REQUEST = GenerationRequest(seed_image=_png((40, 160, 90)), brand_image=_png((220, 30, 30)), prompt=PROMPT, headline="")


def _generator(api_or_url: ReplicateStandIn | str, **overrides) -> ReplicateKontextGenerator:
    settings = dict(
        poll_interval_s=0.01,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        request_timeout_s=1.0,
        timeout_s=5.0,
        max_attempts=4,
    )
    base_url = api_or_url if isinstance(api_or_url, str) else api_or_url.base_url
    return ReplicateKontextGenerator(api_token=TOKEN, base_url=base_url, **{**settings, **overrides})


def _fails(generator: ReplicateKontextGenerator, match: str, **generate_args) -> str:
    with pytest.raises(GenerationError, match=match) as caught:
        generator.generate(REQUEST, **generate_args)
    message = str(caught.value)
    assert TOKEN not in message
    return message


# -- rate limits -------------------------------------------------------------------------------------


def test_rate_limited_create_is_retried_and_paid_once():
    with ReplicateStandIn(create_faults=[429, 429]) as api:
        result = _generator(api).generate(REQUEST)
    assert result.png == api.served[result.details["prediction_id"]]
    assert api.paid == 1
    assert api.attempts["create"] == 3
    assert api.attempts["list"] == 0  # a 429 refuses before any work: nothing to look for
    # The retried request still carries the whole images (the client re-reads the files).
    header, encoded = api.created[0]["input"]["input_image_1"].split(",", 1)
    assert (header, base64.b64decode(encoded)) == ("data:image/png;base64", REQUEST.seed_image)


def test_retry_after_is_honoured():
    with ReplicateStandIn(create_faults=[429], retry_after="1") as api:
        started = time.monotonic()
        _generator(api).generate(REQUEST)
        waited = time.monotonic() - started
    assert waited >= 1.0  # the backoff alone would have waited about 0.01 s
    assert api.paid == 1


def test_retry_after_is_capped_on_create_and_on_polls():
    # An hour's Retry-After, capped at 0.1 s. On polls this also shows the client's own RetryTransport is out
    # of the way: it would sleep the full hour.
    with ReplicateStandIn(create_faults=[429], poll_faults=[429], retry_after="3600") as api:
        started = time.monotonic()
        _generator(api, retry_after_cap_s=0.1).generate(REQUEST)
        assert time.monotonic() - started < 2.0
    assert api.paid == 1


# -- server errors and dropped connections ------------------------------------------------------------


def test_server_errors_on_create_look_for_the_prediction_before_creating_again():
    with ReplicateStandIn(create_faults=[500, 502, 503]) as api:
        _generator(api).generate(REQUEST)
    assert api.paid == 1
    assert api.attempts["create"] == 4
    assert api.attempts["list"] == 3  # after each 5xx the server may have acted: look first


def test_lost_create_response_resumes_the_prediction_it_made():
    seen: list[str] = []
    with ReplicateStandIn(create_faults=[LOST]) as api:
        result = _generator(api).generate(REQUEST, on_created=seen.append)
    assert api.paid == 1  # the server made p0001 and its answer was lost; no second prediction
    assert api.attempts["create"] == 1
    assert result.details["prediction_id"] == "p0001" and seen == ["p0001"]
    assert result.png == api.served["p0001"]


def test_lost_create_response_survives_a_failing_lookup():
    with ReplicateStandIn(create_faults=[LOST], list_faults=[503, LOST]) as api:
        result = _generator(api).generate(REQUEST)
    assert api.paid == 1
    assert api.attempts["create"] == 1 and api.attempts["list"] == 3
    assert result.details["prediction_id"] == "p0001"


def test_lookup_never_takes_another_requests_prediction():
    # Same prompt, other images: a different request, whose prediction is in the recent list.
    other = GenerationRequest(_png((0, 0, 255)), REQUEST.brand_image, PROMPT, "")
    # The other request's create goes through; ours is refused with a 5xx, so the lookup runs and must find nothing.
    with ReplicateStandIn(create_faults=[None, 503]) as api:
        generator = _generator(api)
        generator.generate(other)
        result = generator.generate(REQUEST)
    assert api.attempts["list"] == 1
    assert result.details["prediction_id"] == "p0002"
    assert api.paid == 2  # one per request


def test_server_errors_and_dropped_connections_on_polls_are_retried():
    with ReplicateStandIn(polls_before_done=1, poll_faults=[503, LOST, 502]) as api:
        result = _generator(api).generate(REQUEST)
    assert result.details["status"] == "succeeded"
    assert api.paid == 1
    # Three faults in a row (one short of the bound), then "succeeded": the LOST poll was served "processing".
    assert api.attempts["poll"] == 4


def test_download_server_errors_and_dropped_connections_are_retried():
    with ReplicateStandIn(download_faults=[503, LOST]) as api:
        result = _generator(api).generate(REQUEST)
    assert result.png == api.served["p0001"]
    assert api.paid == 1 and api.attempts["download"] == 3
    assert api.download_auth_headers == [None, None, None]  # retries never send the token to the CDN


def test_retries_are_bounded():
    with ReplicateStandIn(create_faults=[503] * 50) as api:
        message = _fails(_generator(api, max_attempts=4), r"failed after 4 attempts: HTTP 503")
    assert api.attempts["create"] == 4
    assert api.paid == 0
    assert "creating a prediction" in message


def test_connection_refused_is_retried_a_bounded_number_of_times():
    with ReplicateStandIn() as api:
        closed_url = api.base_url
    started = time.monotonic()
    _fails(_generator(closed_url, max_attempts=3), r"failed after 3 attempts: ConnectError")
    assert time.monotonic() - started < 2.0


def test_client_errors_are_not_retried():
    with ReplicateStandIn(create_faults=[400]) as api:
        _fails(_generator(api), r"creating a prediction .* failed: HTTP 400")
    assert api.attempts["create"] == 1 and api.paid == 0


# -- hangs and time ------------------------------------------------------------------------------------


def test_hanging_create_times_out_within_the_deadline():
    # max_attempts is large so the deadline, not the attempt bound, is what ends it. This also guards against
    # the client's own create call, which sends timeout=None (no limit at all in httpx): it would hang for hang_s.
    with ReplicateStandIn(create_faults=[HANG] * 50) as api:
        started = time.monotonic()
        generator = _generator(api, timeout_s=1.0, request_timeout_s=0.3, max_attempts=100)
        _fails(generator, r"creating a prediction .* timed out after 1s")
        elapsed = time.monotonic() - started
    assert elapsed < 1.0 + 0.3 + 0.5  # the deadline, at most one request's timeout past it, and slack
    assert api.paid == 0


def test_hanging_poll_times_out_and_cancels_the_prediction():
    with ReplicateStandIn(poll_faults=[HANG] * 50) as api:
        started = time.monotonic()
        generator = _generator(api, timeout_s=1.0, request_timeout_s=0.3, max_attempts=100)
        _fails(generator, r"polling prediction p0001 timed out after 1s")
        elapsed = time.monotonic() - started
    assert elapsed < 1.0 + 0.3 + 0.5
    assert api.canceled == ["p0001"]  # it stops costing
    assert api.paid == 1


def test_slow_success():
    with ReplicateStandIn(seconds_before_done=0.3, answer_delay_s=0.05) as api:
        started = time.monotonic()
        result = _generator(api).generate(REQUEST)
        assert time.monotonic() - started >= 0.3
    assert result.png == api.served["p0001"]
    assert api.paid == 1


# -- predictions and outputs that fail for good ------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["failed", "canceled"])
def test_failed_or_canceled_prediction_raises_the_reason(outcome):
    with ReplicateStandIn(outcome=outcome, error_message="E005: flagged as sensitive") as api:
        message = _fails(_generator(api), rf"prediction p0001 {outcome}")
    if outcome == "failed":
        assert "E005: flagged as sensitive" in message
    assert api.paid == 1 and api.attempts["create"] == 1  # a model's verdict is not retried


def test_output_that_404s_raises():
    with ReplicateStandIn(download_faults=[404]) as api:
        _fails(_generator(api), r"downloading the output .*/files/p0001\.png failed: .*404")
    assert api.paid == 1 and api.attempts["download"] == 1


def test_output_that_is_not_an_image_raises():
    with ReplicateStandIn(output_body=b"<html>502 Bad Gateway</html>") as api:
        _fails(_generator(api), r"prediction p0001: output is not an image")
    assert api.paid == 1


# -- resuming after a crash ---------------------------------------------------------------------------------


class _Crash(Exception):
    pass


def test_a_saved_prediction_id_resumes_after_a_crash_without_paying_again():
    saved: list[str] = []

    def save_then_crash(prediction_id: str) -> None:
        saved.append(prediction_id)
        raise _Crash  # the process dies right after persisting the id

    with ReplicateStandIn(polls_before_done=2) as api:
        with pytest.raises(_Crash):
            _generator(api).generate(REQUEST, on_created=save_then_crash)
        result = _generator(api).generate(REQUEST, resume_prediction_id=saved[0])  # a fresh process
    assert saved == ["p0001"]
    assert result.details["prediction_id"] == "p0001" and result.png == api.served["p0001"]
    assert api.paid == 1 and api.attempts["create"] == 1


def test_resuming_another_requests_prediction_is_refused():
    other = GenerationRequest(_png((0, 0, 255)), REQUEST.brand_image, "another prompt", "")
    with ReplicateStandIn() as api:
        generator = _generator(api)
        other_id = generator.generate(other).details["prediction_id"]
        _fails(generator, r"was made for another request", resume_prediction_id=other_id)
    assert api.paid == 1


# -- clocks: the lookup after a lost create reads the server's clock, never the client's -----------------


@pytest.mark.parametrize("skew_s", [3600, -3600], ids=["server-an-hour-ahead", "server-an-hour-behind"])
def test_lost_create_is_found_whatever_the_client_clock_says(skew_s):
    with ReplicateStandIn(create_faults=[LOST], clock_skew_s=skew_s) as api:
        result = _generator(api).generate(REQUEST)
    assert api.paid == 1 and api.attempts["create"] == 1
    assert result.details["prediction_id"] == "p0001"


def test_lookup_never_adopts_a_prediction_made_before_this_generation():
    # The same request succeeded two minutes ago (by the server's clock, an hour ahead of the client's). A create
    # refused with a 5xx sends us looking; that older prediction is no answer to this create.
    with ReplicateStandIn(create_faults=[None, 503], clock_skew_s=3600) as api:
        generator = _generator(api)
        generator.generate(REQUEST)
        api.backdate("p0001", 120)
        result = generator.generate(REQUEST)
    assert api.attempts["list"] == 1
    assert result.details["prediction_id"] == "p0002"
    assert api.paid == 2


def test_lookup_tells_requests_apart_by_their_images_when_the_seed_is_fixed():
    # A fixed seed, the same prompt and settings: only the images differ, and the listing echoes them.
    other = GenerationRequest(_png((0, 0, 255)), REQUEST.brand_image, PROMPT, "")
    with ReplicateStandIn(create_faults=[None, 503]) as api:
        generator = _generator(api, seed=7)
        generator.generate(other)
        result = generator.generate(REQUEST)
    assert api.attempts["list"] == 1
    assert result.details["prediction_id"] == "p0002"
    assert result.png == api.served["p0002"]
    assert api.paid == 2


def test_lost_create_is_found_by_its_derived_seed_when_the_listing_hides_the_images():
    with ReplicateStandIn(create_faults=[LOST], echo_file_inputs=False) as api:
        result = _generator(api).generate(REQUEST)
    assert api.paid == 1 and result.details["prediction_id"] == "p0001"


def test_with_a_fixed_seed_and_hidden_images_a_lookup_adopts_nothing():
    # Nothing tells this request's prediction from another's with other images: paying again beats storing
    # another request's picture under this request's key.
    with ReplicateStandIn(create_faults=[LOST], echo_file_inputs=False) as api:
        result = _generator(api, seed=7).generate(REQUEST)
    assert result.details["prediction_id"] == "p0002"
    assert api.paid == 2


# -- failures after paying: resumable, and resumed without paying again -----------------------------------


def _resumable_failure(generator: ReplicateKontextGenerator, match: str, **generate_args) -> GenerationError:
    with pytest.raises(GenerationError, match=match) as caught:
        generator.generate(REQUEST, **generate_args)
    assert TOKEN not in str(caught.value)
    return caught.value


def test_a_failed_download_is_resumable_and_resuming_pays_nothing():
    seen: list[str] = []
    with ReplicateStandIn(download_faults=[404]) as api:
        err = _resumable_failure(_generator(api), r"downloading the output .* failed: .*404", on_created=seen.append)
        assert (err.prediction_id, err.resumable) == ("p0001", True)
        result = _generator(api).generate(REQUEST, on_created=seen.append, resume_prediction_id=err.prediction_id)
    assert result.details["prediction_id"] == "p0001" and result.png == api.served["p0001"]
    assert api.paid == 1 and seen == ["p0001"]


def test_an_output_that_is_not_an_image_is_resumable():
    with ReplicateStandIn(output_body=b"<html>502 Bad Gateway</html>") as api:
        err = _resumable_failure(_generator(api), r"output is not an image", on_created=lambda _: None)
    assert (err.prediction_id, err.resumable) == ("p0001", True)


@pytest.mark.parametrize("outcome", ["failed", "canceled"])
def test_a_prediction_that_failed_is_not_resumable(outcome):
    with ReplicateStandIn(outcome=outcome) as api:
        err = _resumable_failure(_generator(api), rf"prediction p0001 {outcome}", on_created=lambda _: None)
    assert (err.prediction_id, err.resumable) == ("p0001", False)


def test_a_create_that_never_succeeded_has_nothing_to_resume():
    with ReplicateStandIn(create_faults=[400]) as api:
        err = _resumable_failure(_generator(api), r"HTTP 400", on_created=lambda _: None)
    assert (err.prediction_id, err.resumable) == (None, False)


def test_past_the_deadline_a_kept_prediction_runs_on_and_the_next_run_collects_it():
    with ReplicateStandIn(polls_before_done=10_000) as api:
        err = _resumable_failure(_generator(api, timeout_s=0.3), r"timed out after 0\.3s", on_created=lambda _: None)
        assert (err.prediction_id, err.resumable) == ("p0001", True)
        assert api.canceled == []  # the caller keeps its id: it is not canceled
        api.knobs.polls_before_done = 0
        result = _generator(api).generate(REQUEST, resume_prediction_id="p0001")
    assert result.details["prediction_id"] == "p0001"
    assert api.paid == 1


def test_a_resume_that_cannot_reach_the_api_keeps_the_id():
    with ReplicateStandIn(poll_faults=[503] * 10) as api:
        err = _resumable_failure(_generator(api, max_attempts=2), r"resuming prediction p0042 failed after 2",
                                 resume_prediction_id="p0042")
    assert (err.prediction_id, err.resumable) == ("p0042", True)
    assert api.paid == 0


# -- resumed predictions with nothing left to collect are replaced ------------------------------------------


@pytest.mark.parametrize("ending", ["failed", "canceled"])
def test_a_resumed_prediction_that_failed_or_was_canceled_is_replaced(ending):
    seen: list[str] = []
    with ReplicateStandIn(polls_before_done=10_000) as api:
        _resumable_failure(_generator(api, timeout_s=0.3), r"timed out", on_created=seen.append)
        api.finish("p0001", ending)  # e.g. canceled on the website, or the model gave up after the run ended
        api.knobs.polls_before_done = 0
        result = _generator(api).generate(REQUEST, on_created=seen.append, resume_prediction_id="p0001")
    assert result.details["prediction_id"] == "p0002" and seen == ["p0001", "p0002"]
    assert api.paid == 2


def test_a_resumed_prediction_unknown_to_the_account_is_replaced():
    with ReplicateStandIn() as api:
        result = _generator(api).generate(REQUEST, resume_prediction_id="p0042")
    assert result.details["prediction_id"] == "p0001" and api.paid == 1


@pytest.mark.parametrize("skew_s", [0, 3600, -3600])
@pytest.mark.parametrize("gone", ["data removed", "output URL 404s"])
def test_a_resumed_prediction_whose_output_expired_is_replaced(gone, skew_s):
    # The first download fails; two hours later (server clock) the output is gone: removed with the prediction's
    # data, or a URL that still answers 404. It finished longer ago than the retention: a new prediction is made.
    removed = gone == "data removed"
    with ReplicateStandIn(download_faults=[404] if removed else [404, 404], clock_skew_s=skew_s,
                          output_retention_s=3600 if removed else None) as api:
        err = _resumable_failure(_generator(api), r"404", on_created=lambda _: None)
        api.advance_clock(2 * 3600)
        result = _generator(api).generate(REQUEST, resume_prediction_id=err.prediction_id)
    assert result.details["prediction_id"] == "p0002" and result.png == api.served["p0002"]
    assert api.paid == 2


def test_a_young_prediction_whose_output_404s_is_kept_for_the_next_run():
    # Ten minutes after it finished (server clock) the output URL still 404s: a passing fault, not an expiry.
    with ReplicateStandIn(download_faults=[404, 404], clock_skew_s=-3600) as api:
        _resumable_failure(_generator(api), r"404", on_created=lambda _: None)
        api.advance_clock(600)
        err = _resumable_failure(_generator(api), r"404", resume_prediction_id="p0001")
        assert (err.prediction_id, err.resumable) == ("p0001", True)
        result = _generator(api).generate(REQUEST, resume_prediction_id="p0001")
    assert result.details["prediction_id"] == "p0001"
    assert api.paid == 1
