"""The review studio, used as a reviewer would: the real `adrag --offline studio` (Streamlit) over a small
catalog made with the real pipeline, driven by headless Chromium (Debian's `chromium`, via Playwright).
Start a review, accept the subject, turn down #1, approve #2; the approval launches the segment's
partition run, whose status the page follows until the ad shows. The review log and the Dagster
instance under <data dir>/dagster_home must say who approved and which review the ad comes from."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import dagster as dg
from test_ui import SCREENSHOTS, adrag_command, chromium_path_or_fail
from ui_stack import CHROMIUM_ARGS, Server, free_ports, http_ok, stop_all, wait_for

from orchestration import cli

SEGMENT_KEY = "cat-people"
SEGMENTS_YAML = """
brand: {name: Bricks, tagline: Real food for real pets}
segments:
  - name: Outdoor-loving dog owners
    description: active people who hike, run and camp with their dog every weekend
    key: outdoor-dog-owners
    subject: dog
    labels: [dog]
  - name: Cat people
    description: calm indoor people who share the sofa with a cat
    key: cat-people
    subject: cat
    labels: [cat]
"""
SERVER_START_S = 180
RUN_TIMEOUT_S = 360


def test_studio_refuses_a_public_address_without_a_token(monkeypatch, capsys):
    monkeypatch.delenv(cli.STUDIO_TOKEN, raising=False)
    assert cli.main(["studio", "--host", "0.0.0.0"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "0.0.0.0" in error and cli.STUDIO_TOKEN in error


def prepare(data_dir) -> None:
    """A small demo catalog, refreshed by the real catalog job, and the segment partitions synced."""
    from demo_catalog import make_demo_catalog
    from orchestration.runner import RUN_CONFIG, Project, sync_segment_partitions

    make_demo_catalog(data_dir, images_per_subject=3, subjects=("dog", "cat"), size=(320, 240))
    (data_dir / "segments.yaml").write_text(SEGMENTS_YAML)
    overrides = cli.settings_from_flags(argparse.Namespace(data_dir=str(data_dir), offline=True, images=None))
    project = Project(overrides, cli.dagster_home(data_dir))
    with project.instance() as instance:
        result = project.defs.resolve_job_def("refresh_catalog").execute_in_process(
            run_config=RUN_CONFIG, instance=instance, raise_on_error=False)
        assert result.success
        sync_segment_partitions(instance, project.layout.segments_file)


def test_a_reviewer_approves_the_second_candidate_and_gets_the_ad(tmp_path, monkeypatch):
    import os

    from playwright.sync_api import expect, sync_playwright

    from assets_pkg.layout import DataLayout
    from assets_pkg.review.events import read_events

    executable = chromium_path_or_fail()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("ADRAG_DEVICE", "cpu")
    data_dir = tmp_path / "data"
    prepare(data_dir)
    [port] = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADRAG_", "DAGSTER_", "MLFLOW_", "REPLICATE_"))}
    env.update({"ADRAG_DEVICE": "cpu", "REPLICATE_API_TOKEN": "", "HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"})
    server = Server("adrag studio", [*adrag_command(), "--data-dir", str(data_dir), "--offline", "studio",
                                     "--port", str(port)], env, Path(__file__).resolve().parent.parent,
                    SCREENSHOTS / "studio-server.log")
    try:
        wait_for("the studio", lambda: http_ok(f"{url}/_stcore/health"), SERVER_START_S, server)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(60_000)
                page.goto(url)
                reviewer = page.get_by_label("Reviewer")
                reviewer.fill("alice")
                reviewer.press("Enter")
                page.get_by_test_id("stSelectbox").click()
                page.get_by_role("option", name=f"Cat people ({SEGMENT_KEY})").click()
                expect(page.get_by_role("combobox", name="Segment")).to_have_value(f"Cat people ({SEGMENT_KEY})")
                page.get_by_role("button", name="Start review").click()
                expect(page.get_by_text("Proposed subject:").first).to_be_visible()
                page.get_by_role("button", name="Looks right", exact=True).click()
                expect(page.get_by_role("heading", name=re.compile(r"#1 of 3$"))).to_be_visible()
                page.get_by_role("button", name="Not quite").click()
                expect(page.get_by_role("heading", name=re.compile(r"#2 of 3$"))).to_be_visible()
                pictures = page.get_by_test_id("stImage").locator("img")
                expect(pictures).to_have_count(3)  # the shown candidate, large, and the other two
                for n in range(3):
                    page.wait_for_function("img => img.complete && img.naturalWidth > 0",
                                           arg=pictures.nth(n).element_handle())
                page.screenshot(path=str(SCREENSHOTS / "studio-01-candidate-2.png"))
                page.get_by_role("button", name="Looks right → Approve").click()
                expect(page.get_by_text("done", exact=True)).to_be_visible(timeout=RUN_TIMEOUT_S * 1000)
                ad = page.get_by_test_id("stImage").filter(has_text=f"Ad for {SEGMENT_KEY}").locator("img")
                expect(ad).to_be_visible()
                page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=ad.element_handle())
                page.screenshot(path=str(SCREENSHOTS / "studio-02-ad.png"))
            except Exception:
                page.screenshot(path=str(SCREENSHOTS / "studio-failed.png"))
                raise
            finally:
                browser.close()
    finally:
        stop_all([server])

    events = read_events(DataLayout.under(data_dir), SEGMENT_KEY)
    [approved] = [e for e in events if e["event"] == "approved"]
    assert approved["reviewer"] == "alice" and approved["candidate_rank"] == 2
    with dg.DagsterInstance.from_config(str(data_dir / "dagster_home")) as instance:
        [record] = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("campaign_ad"), asset_partitions=[SEGMENT_KEY]),
            limit=1).records
        metadata = {k: v.value for k, v in record.asset_materialization.metadata.items()}
    assert metadata["review_id"] == approved["review_id"] and metadata["approved_by"] == "alice"
