"""The campaign stage's operations as plain functions, with no Dagster run around them: what the Dagster
step calls, and what another front end (the CLI, a review app) calls the same way."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient
from test_pipeline import refresh

from assets_pkg.campaigns.generators.compositor import LocalCompositor
from assets_pkg.campaigns.operations import Campaigns, latest_campaign, make_ad, make_candidates, retrieve_top3
from assets_pkg.index.readiness import IndexNotReady


@pytest.fixture
def campaigns(resources, instance, layout) -> Campaigns:
    refresh(resources, instance)  # the catalog, the embeddings and the index exist
    store = resources["mlflow_tracking"].store(layout)
    return Campaigns(layout, store, resources["clip"].encoder, tags={"front_end": "test"})


class CountedSearches:
    """The real index reader, counting its queries."""

    def __init__(self, reader):
        self.reader, self.table, self.queries = reader, reader.table, 0

    def search(self, *args, **kwargs):
        self.queries += 1
        return self.reader.search(*args, **kwargs)


def test_candidates_query_once_and_an_ad_from_the_second_candidate_queries_none(campaigns, layout):
    counted = CountedSearches(campaigns.index)
    campaigns.index = counted
    key = campaigns.segments.segments[0].key

    made = make_candidates(campaigns, key)
    assert counted.queries == 1
    assert [c["rank"] for c in made.row["candidates"]] == [0, 1, 2] and made.contact_sheet.is_file()

    ad = make_ad(campaigns, key, LocalCompositor(width=128, height=128), layout.brand_image.read_bytes(), rank=1)
    assert counted.queries == 1, "making the ad from a stored candidate queries nothing"
    assert not ad.failed and ad.path.is_file()
    assert ad.row["seed_image_id"] == made.row["candidates"][1]["image_id"]

    latest = latest_campaign(layout, key)
    assert latest["output_path"] == str(ad.path) and latest["seed_index"] == 1
    assert latest_campaign(layout, "no-such-segment") is None

    # One layer fills the run: the ad's MLflow run carries the choice, the tags and the files.
    run = MlflowClient(campaigns.tracking.tracking_uri).get_run(latest["mlflow_run_id"])
    assert run.data.params["seed_index"] == "1" and run.data.params["segment"] == key
    assert run.data.tags["front_end"] == "test" and run.data.tags["stage"] == "ad"

    # An ad from stored candidates needs no index (a retry after the catalog moved on); the model scores it.
    elsewhere = Campaigns(layout, campaigns.tracking, lambda: campaigns.encoder)
    elsewhere.index = None  # any use of the index would fail
    again = make_ad(elsewhere, key, LocalCompositor(width=128, height=128), layout.brand_image.read_bytes())
    assert not again.failed and again.attempts[0].scores is not None

    subject = made.row["subject"]
    again = retrieve_top3(campaigns, campaigns.segment(key), subject)
    assert counted.queries == 2 and [h.image_id for h in again.hits] == [c["image_id"] for c in made.row["candidates"]]


def test_no_candidates_before_the_index_exists(resources, layout):
    campaigns = Campaigns(layout, resources["mlflow_tracking"].store(layout), resources["clip"].encoder)
    with pytest.raises(IndexNotReady, match="there is no index for model"):
        make_candidates(campaigns, campaigns.segments.segments[0].key)
