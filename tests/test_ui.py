"""The Dagster and MLflow UIs, used as a user would use them.

One module-scoped stack: a small demo catalog in a temporary data directory, then the README's
commands on free loopback ports: `adrag --offline ui` (the real `dagster dev`: webserver, daemon,
code server, on <data dir>/dagster_home) and `adrag --offline mlflow` (the MLflow server). Through
the Dagster GraphQL API the test adds a segment partition, launches `refresh_catalog`, then
`generate_campaigns` for that partition, and waits for both to succeed. Then headless Chromium
(Debian's `chromium`, driven by Playwright) opens the asset graph, the campaign materializations
with their pictures, and the MLflow run the ad links to; the MLflow REST API must serve the run and
the ad's bytes. Screenshots (and the servers' logs) go to `artifacts/ui-screenshots/` (or
$ADRAG_UI_SCREENSHOTS). Everything is shut down at the end, even on failure.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image
from ui_stack import (
    CHROMIUM_ARGS,
    Server,
    chromium_path,
    free_ports,
    http_ok,
    processes_with_environment,
    stop_all,
    wait_for,
)

from assets_pkg.embeddings.model import TINY_MODEL

# The Dagster GraphQL client passes variables the way gql 4 deprecates; not this project's code.
pytestmark = pytest.mark.filterwarnings("ignore:Using variable_values and operation_name:DeprecationWarning")

REPO = Path(__file__).resolve().parent.parent
SCREENSHOTS = Path(os.environ.get("ADRAG_UI_SCREENSHOTS") or REPO / "artifacts" / "ui-screenshots")

ASSETS = ["image_manifest", "image_mirror", "image_embeddings", "image_index", "campaign_candidates", "campaign_ad"]
SEGMENT_KEY = "outdoor-dog-owners"
SEGMENT_NAME = "Outdoor-loving dog owners"
SEGMENTS_YAML = f"""
brand: {{name: Bricks, tagline: Real food for real pets}}
segments:
  - name: {SEGMENT_NAME}
    description: active people who hike, run and camp with their dog every weekend
    key: {SEGMENT_KEY}
    subject: dog
    labels: [dog]
"""
LOCATION = "adrag"  # workspace.yaml
REPOSITORY = "__repository__"  # the implicit repository of a Definitions object
# Run logs at INFO, as the CLI runs them. In-process execution: the default multiprocess executor starts
# one Python per step, each importing torch and the code location (~10 s on two cores), which would
# make the catalog job alone take about two minutes; the webserver, daemon, run queue, run launcher and
# code server are the same either way.
RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}, "execution": {"config": {"in_process": {}}}}
SERVER_START_S = 240
RUN_TIMEOUT_S = 360


@dataclass
class Stack:
    data_dir: Path
    dagster_url: str
    mlflow_url: str
    catalog_run_id: str
    campaign_run_id: str
    dagster: Server  # `adrag ui`: dagster dev, its webserver, daemon and code server, in one process group


def test_asset_graph_shows_every_asset(stack: Stack, page):
    from playwright.sync_api import expect

    nodes = graphql(stack.dagster_url, "{ assetNodes { assetKey { path } isPartitioned } }")["assetNodes"]
    served = {"/".join(n["assetKey"]["path"]): n["isPartitioned"] for n in nodes}
    assert set(ASSETS) <= set(served), f"the webserver serves {sorted(served)}"
    # Wide enough that the fitted graph draws full asset nodes (names untruncated, status rows).
    page.set_viewport_size({"width": 2560, "height": 1100})
    page.goto(f"{stack.dagster_url}/asset-groups")
    expect(page.get_by_text("Global asset lineage")).to_be_visible(timeout=60_000)
    # Groups start collapsed: open them the way a user does, from the graph's settings menu.
    page.get_by_role("button", name="settings", exact=True).click()
    page.get_by_role("menuitem", name="Expand all groups").click()
    page.keyboard.press("Escape")
    for asset in served:
        expect(page.get_by_text(asset, exact=True), f"asset {asset} in the graph").to_be_visible(timeout=30_000)
    # Every asset was materialized: the unpartitioned ones say so, the partitioned ones are filled.
    partitioned = sum(served.values())
    expect(page.get_by_text("Materialized", exact=True)).to_have_count(len(served) - partitioned)
    expect(page.get_by_text("100% filled", exact=True)).to_have_count(partitioned)
    page.screenshot(path=str(SCREENSHOTS / "01-asset-graph.png"))


def test_the_ui_instance_limits_the_gpu_and_image_api_pools(stack: Stack):
    limits = graphql(stack.dagster_url, "{ instance { concurrencyLimits { concurrencyKey slotCount } } }")
    slots = {entry["concurrencyKey"]: entry["slotCount"] for entry in limits["instance"]["concurrencyLimits"]}
    assert slots == {"gpu": 1, "image_api": 1}  # `adrag ui` sets them from the concurrency settings' defaults


def test_campaign_candidates_show_the_contact_sheet(stack: Stack, page):
    image = open_markdown_picture(page, stack, "campaign_candidates", "contact_sheet")
    assert image["alt"] == f"{SEGMENT_NAME}: top 3"
    assert image["width"] > 300 and image["height"] > 100, image
    page.screenshot(path=str(SCREENSHOTS / "02-campaign-candidates-contact-sheet.png"))


def test_campaign_ad_shows_the_ad(stack: Stack, page):
    image = open_markdown_picture(page, stack, "campaign_ad", "ad")
    assert image["alt"] == f"{SEGMENT_NAME}: ad"
    assert image["width"] >= 256 and image["width"] == image["height"], image  # the square ad, as a preview
    page.screenshot(path=str(SCREENSHOTS / "03-campaign-ad.png"))


def test_the_ad_and_its_candidates_link_to_each_other(stack: Stack, page):
    from playwright.sync_api import expect

    open_materialization(page, stack, "campaign_ad")
    page = follow_link(page, metadata_row(page, "candidates_page"))
    assert f"/assets/campaign_candidates?view=events&partition={SEGMENT_KEY}" in page.url, page.url
    expect(metadata_row(page, "contact_sheet")).to_be_visible(timeout=60_000)
    page = follow_link(page, metadata_row(page, "ad_page"))
    assert f"/assets/campaign_ad?view=events&partition={SEGMENT_KEY}" in page.url, page.url
    expect(metadata_row(page, "ad_file")).to_be_visible(timeout=60_000)


def test_the_freshness_daemon_finds_the_index_fresh_and_the_asset_page_says_so(stack: Stack, page):
    from playwright.sync_api import expect

    query = """{ assetNodeOrError(assetKey: {path: ["image_index"]}) { ... on AssetNode {
        owners { ... on TeamAssetOwner { team } } opVersion
        freshnessStatusInfo { freshnessStatus } } } }"""

    def status() -> dict:
        return graphql(stack.dagster_url, query)["assetNodeOrError"]

    node = wait_for("the index's freshness evaluated", lambda: status()["freshnessStatusInfo"]["freshnessStatus"]
                    == "HEALTHY" and status(), 120, stack.dagster)
    assert [o["team"] for o in node["owners"]] == ["data"] and node["opVersion"].startswith(TINY_MODEL)
    page.goto(f"{stack.dagster_url}/assets/image_index")
    expect(page.get_by_text("Freshness").first).to_be_visible(timeout=60_000)
    page.screenshot(path=str(SCREENSHOTS / "06-index-asset-page.png"), full_page=True)


def test_the_launchpad_describes_the_rank(stack: Stack, page):
    from playwright.sync_api import expect

    page.goto(f"{stack.dagster_url}/locations/{LOCATION}/jobs/generate_campaigns/playground")
    expect(page.get_by_text("segment_campaign").first).to_be_visible(timeout=60_000)
    config = graphql(stack.dagster_url, """{ assetNodeOrError(assetKey: {path: ["campaign_ad"]}) { ... on AssetNode {
        configField { configType { ... on CompositeConfigType { fields { name description } } } } } } }""")
    fields = config["assetNodeOrError"]["configField"]["configType"]["fields"]
    rank = next(f for f in fields if f["name"] == "rank")
    assert rank["description"].startswith("Which of the segment's top-3 candidates seeds the ad: 1 = the best match")
    page.screenshot(path=str(SCREENSHOTS / "07-launchpad.png"), full_page=True)


def follow_link(page, row):
    """Click the row's link as a user would; Dagster opens URL metadata in a new tab."""
    link = row.get_by_role("link").first
    if link.get_attribute("target") == "_blank":
        with page.context.expect_page() as opened:
            link.click()
        opened.value.wait_for_load_state()
        return opened.value
    link.click()
    return page


def test_mlflow_serves_the_campaign_run_and_its_ad(stack: Stack, page):
    from playwright.sync_api import expect

    api = f"{stack.mlflow_url}/api/2.0/mlflow"
    experiment = httpx.get(f"{api}/experiments/get-by-name", params={"experiment_name": "ad-campaigns"}, timeout=30)
    assert experiment.status_code == 200, experiment.text
    experiment_id = experiment.json()["experiment"]["experiment_id"]
    found = httpx.post(f"{api}/runs/search", timeout=30, json={
        "experiment_ids": [experiment_id],
        "filter": f"tags.segment = '{SEGMENT_KEY}' and tags.stage = 'ad'"}).json()
    runs = found.get("runs", [])
    assert len(runs) == 1, found
    run = runs[0]
    run_id = run["info"]["run_id"]
    assert run["info"]["status"] == "FINISHED"
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["dagster_run_id"] == stack.campaign_run_id
    assert tags["mlflow.source.name"] == "adrag/ad-campaigns"  # as from the CLI (test_pipeline), not dagster's script
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert params["segment"] == SEGMENT_KEY and params["subject"] == "dog"

    listing = httpx.get(f"{api}/artifacts/list", params={"run_id": run_id}, timeout=30).json()
    ad_names = [f["path"] for f in listing.get("files", [])
                if f["path"].startswith("ad-") and f["path"].endswith(".png")]
    assert len(ad_names) == 1, listing
    served = httpx.get(f"{stack.mlflow_url}/get-artifact", params={"path": ad_names[0], "run_uuid": run_id}, timeout=30)
    assert served.status_code == 200, served.text[:500]
    on_disk = stack.data_dir / "campaigns" / SEGMENT_KEY / ad_names[0]
    assert served.content == on_disk.read_bytes(), "the MLflow server serves other bytes than the ad file"
    with Image.open(io.BytesIO(served.content)) as ad:
        assert ad.format == "PNG" and ad.size == (1024, 1024)

    # From the ad's materialization, follow its MLflow link to the run page, then to the ad artifact.
    open_materialization(page, stack, "campaign_ad")
    link = metadata_row(page, "mlflow_run").get_by_role("link").first
    href = link.get_attribute("href")
    assert href == f"{stack.mlflow_url}/#/experiments/{experiment_id}/runs/{run_id}", href
    page.goto(href)
    expect(page.get_by_text(f"{SEGMENT_KEY}-ad").first).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Finished").first).to_be_visible()
    close_mlflow_assistant(page)
    page.screenshot(path=str(SCREENSHOTS / "04-mlflow-run.png"))
    page.goto(f"{href}/artifacts/{ad_names[0]}")
    picture = page.locator("img[src^='blob:']").first
    expect(picture).to_be_visible(timeout=60_000)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=picture.element_handle(), timeout=30_000)
    assert picture.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [1024, 1024]
    close_mlflow_assistant(page)
    page.screenshot(path=str(SCREENSHOTS / "05-mlflow-ad-artifact.png"))

    # The experiment's traces: the segment shows in the list, as the trace's tag and its request.
    page.goto(f"{stack.mlflow_url}/#/experiments/{experiment_id}/traces")
    expect(page.get_by_text(SEGMENT_KEY).first).to_be_visible(timeout=60_000)
    close_mlflow_assistant(page)
    tip = page.get_by_role("button", name="Got it")  # MLflow 3.17 advertises "Detect Issues" over the list
    if tip.count() == 1 and tip.is_visible():
        tip.click()
    page.screenshot(path=str(SCREENSHOTS / "08-mlflow-traces.png"))


# --- the browser ---------------------------------------------------------------------------------

def open_materialization(page, stack: Stack, asset: str) -> None:
    """The asset's Events tab for the segment partition: its latest materialization and its metadata."""
    from playwright.sync_api import expect

    page.goto(f"{stack.dagster_url}/assets/{asset}?view=events&partition={SEGMENT_KEY}")
    expect(page.get_by_text(SEGMENT_KEY).first).to_be_visible(timeout=60_000)
    expect(metadata_row(page, "mlflow_run_id")).to_be_visible(timeout=60_000)


def metadata_row(page, key: str):
    return page.locator("tr", has=page.get_by_text(key, exact=True))


def open_markdown_picture(page, stack: Stack, asset: str, key: str) -> dict:
    """Open the materialization's markdown metadata entry `key` and return its rendered <img>."""
    from playwright.sync_api import expect

    open_materialization(page, stack, asset)
    row = metadata_row(page, key)
    expect(row, f"metadata entry {key!r} on {asset}").to_be_visible()
    # Dagster shows markdown metadata behind a "[Show Markdown]" link that opens a dialog.
    row.get_by_text("[Show Markdown]").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text(key, exact=True)).to_be_visible()
    picture = dialog.locator("img[src^='data:image/']")
    expect(picture, f"the picture in {asset}'s {key!r} metadata").to_have_count(1)
    expect(picture).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=picture.element_handle(), timeout=30_000)
    width, height = picture.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    return {"alt": picture.get_attribute("alt"), "width": width, "height": height}


def close_mlflow_assistant(page) -> None:
    """MLflow 3 opens an assistant side panel over part of the page; close it for the screenshot."""
    close = page.get_by_role("button", name="Close", exact=True)
    if close.count() == 1 and close.is_visible():
        close.click()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = chromium_path_or_fail()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, request):
    from playwright.sync_api import Error as PlaywrightError

    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(30_000)
    page = context.new_page()
    # Should the "Join the Dagster community" dialog show up anyway (see `stack`), skip it as a user would.
    page.add_locator_handler(page.get_by_role("button", name="Skip"),
                             lambda: page.get_by_role("button", name="Skip").click())
    failed_before = request.session.testsfailed
    try:
        yield page
    finally:
        if request.session.testsfailed > failed_before:  # this test failed: keep what the browser showed
            try:
                page.screenshot(path=str(SCREENSHOTS / f"failed-{request.node.name}.png"))
            except PlaywrightError:
                pass  # the page itself is broken: the test's own failure says why
        context.close()


def chromium_path_or_fail() -> str:
    """A missing browser fails the test (a skipped test is a missing test)."""
    try:
        return chromium_path()
    except RuntimeError as missing:
        message = str(missing)
    pytest.fail(message, pytrace=False)


# --- the servers and the runs --------------------------------------------------------------------

@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Stack:
    chromium_path_or_fail()  # before minutes of setup, not after
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    root = tmp_path_factory.mktemp("ui")
    data_dir = prepare_data_dir(root / "data")
    dagster_port, mlflow_port = free_ports(2)
    dagster_url, mlflow_url = f"http://127.0.0.1:{dagster_port}", f"http://127.0.0.1:{mlflow_port}"
    env = server_environment(dagster_port, mlflow_url, home=root)
    adrag = [*adrag_command(), "--data-dir", str(data_dir), "--offline"]
    servers: list[Server] = []
    try:
        # The README's commands; both start at once (each takes a while to import). `adrag ui` is
        # `dagster dev` on <data dir>/dagster_home; `adrag mlflow` serves the store the runs write to.
        servers.append(Server("adrag mlflow", [*adrag, "mlflow"], env, REPO, SCREENSHOTS / "mlflow-server.log"))
        servers.append(Server("adrag ui (dagster dev)", [*adrag, "ui"], env, REPO, SCREENSHOTS / "dagster-dev.log"))
        mlflow, dagster = servers
        wait_for("the Dagster webserver", lambda: http_ok(f"{dagster_url}/server_info"), SERVER_START_S, dagster)
        wait_for("the adrag code location", lambda: code_location_loaded(dagster_url), SERVER_START_S, dagster)
        wait_for("the MLflow server", lambda: http_ok(f"{mlflow_url}/health"), SERVER_START_S, mlflow)

        # A new instance greets the first visitor with a "Join the Dagster community" dialog that pops up,
        # whenever its query returns, over what the browser is clicking (closing an open menu). Dismiss it
        # up front, with the mutation its Skip button sends.
        assert graphql(dagster_url, "mutation { setNuxSeen }")["setNuxSeen"] is True
        add_segment_partition(dagster_url, SEGMENT_KEY)
        from dagster_graphql import DagsterGraphQLClient

        client = DagsterGraphQLClient("127.0.0.1", port_number=dagster_port, timeout=60)
        catalog_run = launch_and_wait(client, dagster_url, dagster, "refresh_catalog")
        campaign_run = launch_and_wait(client, dagster_url, dagster, "generate_campaigns",
                                       tags={"dagster/partition": SEGMENT_KEY})
        yield Stack(data_dir=data_dir, dagster_url=dagster_url, mlflow_url=mlflow_url,
                    catalog_run_id=catalog_run, campaign_run_id=campaign_run, dagster=dagster)
    finally:
        stop_all(servers)


def adrag_command() -> list[str]:
    """The `adrag` console script next to this interpreter (the installed project), else its module."""
    script = Path(sys.executable).with_name("adrag")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "orchestration.cli"]


def prepare_data_dir(data_dir: Path) -> Path:
    from demo_catalog import make_demo_catalog

    make_demo_catalog(data_dir, images_per_subject=3, subjects=("dog", "cat"), size=(320, 240))
    (data_dir / "segments.yaml").write_text(SEGMENTS_YAML)
    return data_dir


def server_environment(dagster_port: int, mlflow_url: str, home: Path) -> dict[str, str]:
    """This process's environment without the project's settings; the CLI fills in their defaults."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ADRAG_", "DAGSTER_", "MLFLOW_", "REPLICATE_"))}
    env.update({
        "ADRAG_DEVICE": "cpu",
        "REPLICATE_API_TOKEN": "",  # the local compositor makes the ad: no network
        "ADRAG_MLFLOW_UI_URL": mlflow_url,  # where `adrag mlflow` listens and Dagster's run links point
        # `dagster dev`'s --host/--port, through its CLI's environment prefix (as `adrag ui --host/--port` would).
        "DAGSTER_CLI_DEV_HOST": "127.0.0.1",
        "DAGSTER_CLI_DEV_PORT": str(dagster_port),
        "MLFLOW_WORKERS": "1",  # one web worker is plenty for one browser; two cores are shared
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # no GenAI job workers: nothing here needs them
        "HOME": str(home),  # nothing the servers write lands in the real home
        "PYTHONUNBUFFERED": "1",
        "FRESHNESS_DAEMON_INTERVAL_SECONDS": "5",  # Dagster's freshness daemon: every 30 s by default
    })
    return env


def graphql(dagster_url: str, query: str, variables: dict | None = None) -> dict:
    response = httpx.post(f"{dagster_url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def code_location_loaded(dagster_url: str) -> bool:
    data = graphql(dagster_url, """{ workspaceOrError { ... on Workspace { locationEntries {
        name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }""")
    for entry in data["workspaceOrError"]["locationEntries"]:
        if entry["name"] == LOCATION and entry["loadStatus"] == "LOADED":
            location = entry["locationOrLoadError"] or {}
            if location.get("__typename") == "PythonError":
                pytest.fail(f"the {LOCATION} code location failed to load: {location['message']}", pytrace=False)
            return location.get("__typename") == "RepositoryLocation"
    return False


def add_segment_partition(dagster_url: str, key: str) -> None:
    """What the UI's "Add partition" does (the segments sensor is off in a fresh instance)."""
    data = graphql(dagster_url, """
        mutation($selector: RepositorySelector!, $name: String!, $key: String!) {
          addDynamicPartition(repositorySelector: $selector, partitionsDefName: $name, partitionKey: $key) {
            __typename ... on AddDynamicPartitionSuccess { partitionKey } ... on PythonError { message }
            ... on UnauthorizedError { message } } }""",
        {"selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY},
         "name": "segments", "key": key})
    result = data["addDynamicPartition"]
    assert result["__typename"] == "AddDynamicPartitionSuccess", result


def launch_and_wait(client, dagster_url: str, dagster: Server, job: str, tags: dict | None = None) -> str:
    run_id = client.submit_job_execution(job, repository_location_name=LOCATION, repository_name=REPOSITORY,
                                         run_config=RUN_CONFIG, tags=tags)
    started = time.monotonic()
    status = wait_for(f"run {run_id} of {job} to finish",
                      lambda: (s := client.get_run_status(run_id).value) in ("SUCCESS", "FAILURE", "CANCELED") and s,
                      RUN_TIMEOUT_S, dagster, interval_s=1.0)
    if status != "SUCCESS":
        pytest.fail(f"{job} run {run_id} ended {status} after {time.monotonic() - started:.0f}s:\n"
                    f"{run_errors(dagster_url, run_id)}\n(more in {dagster.log_file})", pytrace=False)
    return run_id


def run_errors(dagster_url: str, run_id: str) -> str:
    data = graphql(dagster_url, """query($runId: ID!) { logsForRun(runId: $runId) {
        ... on EventConnection { events { __typename
          ... on MessageEvent { message stepKey }
          ... on ErrorEvent { error { message causes { message } } } } } } }""", {"runId": run_id})
    lines = []
    for event in data["logsForRun"].get("events", []):
        error = event.get("error")
        if error:
            chain = [error["message"].strip(), *(c["message"].strip() for c in error.get("causes") or [])]
            lines.append(f"{event.get('stepKey') or 'run'}: {' <- '.join(chain)}")
    return "\n".join(lines) or "(no error events)"


STOP_WITHIN_S = 15


def test_zz_sigterm_to_adrag_ui_stops_dagster_dev_and_everything_it_started(stack: Stack):
    """Last in this file (named so): it stops the module's Dagster stack. A service manager, or `kill`, sends
    SIGTERM to the process it started (`adrag ui`); dagster dev's webserver, daemon and code server must go
    with it, not linger holding the port and the instance. They are found by the instance they serve
    (DAGSTER_HOME in their environment), wherever in the process tree they are."""
    home = str(stack.data_dir / "dagster_home")
    server = stack.dagster
    assert server.alive() and len(processes_with_environment("DAGSTER_HOME", home)) >= 3  # dev, webserver, daemon
    os.kill(server.process.pid, signal.SIGTERM)
    started = time.monotonic()
    while processes_with_environment("DAGSTER_HOME", home) and time.monotonic() - started < STOP_WITHIN_S:
        time.sleep(0.2)
    left = processes_with_environment("DAGSTER_HOME", home)
    assert not left, f"{len(left)} processes of this instance outlived SIGTERM to `adrag ui` by {STOP_WITHIN_S}s"
    assert server.process.wait(timeout=10) == 0  # and `adrag ui` itself has ended
    with pytest.raises(httpx.ConnectError):  # nothing listens on the port any more
        httpx.get(f"{stack.dagster_url}/server_info", timeout=5)
