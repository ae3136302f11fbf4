"""What the Dagster UI shows on a campaign materialization: the pictures, the segment's name, the MLflow link."""

from __future__ import annotations

import base64
import io
import re

import dagster as dg
from PIL import Image
from test_pipeline import refresh

from assets_pkg.campaigns.previews import preview_jpeg
from assets_pkg.campaigns.segments import load_segments
from orchestration.definitions import CAMPAIGN_ASSETS
from orchestration.runner import sync_segment_partitions

DATA_URI = re.compile(r"!\[[^\]]*\]\(data:image/jpeg;base64,([A-Za-z0-9+/=]+)\)")


def inline_picture(markdown: str) -> Image.Image:
    [encoded] = DATA_URI.findall(markdown)
    picture = Image.open(io.BytesIO(base64.b64decode(encoded)))
    picture.load()
    return picture


def test_campaign_materializations_carry_the_pictures_the_name_and_the_mlflow_link(resources, instance, layout):
    refresh(resources, instance)
    key = sync_segment_partitions(instance, layout.segments_file)[0]
    segment = load_segments(layout.segments_file).by_key(key)
    result = dg.materialize(CAMPAIGN_ASSETS, resources=resources, instance=instance, partition_key=key)
    metadata = {e.asset_key.to_user_string(): e.materialization.metadata
                for e in result.get_asset_materialization_events()}

    sheet = inline_picture(metadata["campaign_candidates"]["contact_sheet"].value)
    ad_meta = metadata["campaign_ad"]
    ad = inline_picture(ad_meta["ad"].value)
    assert sheet.format == ad.format == "JPEG" and max(ad.size) <= 640 and max(sheet.size) <= 640
    full_size = Image.open(next((layout.campaigns_dir / key).glob("ad-*.png")))
    assert abs(ad.size[0] / ad.size[1] - full_size.size[0] / full_size.size[1]) < 0.02  # the ad, scaled down

    assert ad_meta["segment"].value == segment.name
    assert metadata["campaign_candidates"]["description"].value == segment.description
    run_id = ad_meta["mlflow_run_id"].value
    assert isinstance(ad_meta["mlflow_run"], dg.UrlMetadataValue)
    assert re.fullmatch(rf"http://127\.0\.0\.1:5000/#/experiments/\d+/runs/{run_id}", ad_meta["mlflow_run"].value)
    # One click from the ad to its candidates and back (relative links: the UI's own host and port).
    assert ad_meta["candidates_page"].value == f"/assets/campaign_candidates?view=events&partition={key}"
    assert metadata["campaign_candidates"]["ad_page"].value == f"/assets/campaign_ad?view=events&partition={key}"


def test_previews_of_transparent_and_large_images_are_small_opaque_jpegs():
    rgba = Image.new("RGBA", (2000, 1000), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 1000, 1000))
    out = io.BytesIO()
    rgba.save(out, format="PNG")
    preview = Image.open(io.BytesIO(preview_jpeg(out.getvalue())))
    assert preview.format == "JPEG" and preview.size == (640, 320)
    assert preview.getpixel((480, 160))[0] > 240 and preview.getpixel((480, 160))[1] > 240  # transparent: white
    assert preview.getpixel((100, 160))[2] > 200 and preview.getpixel((100, 160))[0] < 60  # opaque blue kept
