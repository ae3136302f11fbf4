"""Campaign assets, one partition per audience segment: candidates (subject + top-3), then the ad."""

import json
from pathlib import Path

import dagster as dg

from assets_pkg.campaigns.ads import make_ad
from assets_pkg.campaigns.candidates import build_candidates
from assets_pkg.campaigns.partitions import segment_partitions
from assets_pkg.campaigns.previews import markdown_picture
from assets_pkg.campaigns.resources import ImageGeneratorResource
from assets_pkg.campaigns.segments import load_segments
from assets_pkg.campaigns.store import append_campaign, read_candidates, replace_candidates
from assets_pkg.campaigns.subjects import ClipZeroShotProposer
from assets_pkg.catalog.assets import image_mirror
from assets_pkg.embeddings.resources import ClipModel
from assets_pkg.index.assets import image_index
from assets_pkg.index.lance_index import catalog_labels, open_index
from assets_pkg.resources import DataStore, MlflowTracking
from assets_pkg.slots import slot
from assets_pkg.tracking import MlflowStore, RunRecord

EXPERIMENT = "ad-campaigns"


# A generation that failed because the service was busy, down or slow (after the generator's own bounded
# retries) runs again later; at most 2 more paid attempts per segment and run.
GENERATION_RETRY = dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


class AdConfig(dg.Config):
    seed_index: int = 0  # which of the top-3 candidates seeds the ad (0 = best match)


@dg.asset(
    group_name="campaigns",
    partitions_def=segment_partitions,
    deps=[image_index, image_mirror],
    kinds={"deltalake", "lancedb"},
    description="For one segment: the subject (from the segments file or CLIP zero-shot over catalog labels), "
                "the retrieval query, the top-3 photos with scores, and a contact sheet of them.",
)
def campaign_candidates(context: dg.AssetExecutionContext, data_store: DataStore, clip: ClipModel,
                        mlflow_tracking: MlflowTracking) -> dg.MaterializeResult:
    layout = data_store.layout
    segment = load_segments(layout.segments_file).by_key(context.partition_key)
    encoder = clip.encoder()
    table = open_index(layout.lance_dir, encoder.model_key)
    if table is None or table.count_rows() == 0:
        raise dg.Failure(f"the index for model {encoder.model_key} is empty: materialize the refresh_catalog job first")
    record = RunRecord(experiment=EXPERIMENT, run_name=f"{segment.key}-candidates",
                       tags={"segment": segment.key, "stage": "candidates", "dagster_run_id": context.run.run_id})
    result = build_candidates(segment, table, encoder.model_key, encoder.encode_texts,
                              ClipZeroShotProposer(encoder.encode_texts), catalog_labels(table),
                              layout.mirror_table, layout.campaign_dir(segment.key), record)
    replace_candidates(layout.candidates_table, result.row)
    record.params.update(segment=segment.key, segment_name=segment.name, subject=result.proposal.subject,
                         subject_method=result.proposal.method, query=result.row["query"],
                         model_key=encoder.model_key)
    record.texts["candidates.json"] = json.dumps(result.row["candidates"], indent=2)
    record.files.append(result.contact_sheet_path)
    store = mlflow_tracking.store(layout)
    run_id = store.log(record)
    return dg.MaterializeResult(metadata={
        "segment": segment.name,
        "description": segment.description,
        "subject": result.proposal.subject,
        "subject_method": result.proposal.method,
        "query": result.row["query"],
        "candidates": dg.MetadataValue.md("\n".join(
            f"{c['rank']}. `{c['path']}` score {c['score']:.3f}" for c in result.row["candidates"])),
        "contact_sheet": dg.MetadataValue.md(markdown_picture(result.contact_sheet_path, f"{segment.name}: top 3")),
        **mlflow_metadata(store, run_id),
    })


@dg.asset(
    group_name="campaigns",
    partitions_def=segment_partitions,
    deps=[campaign_candidates],
    kinds={"replicate", "mlflow"},
    pool="image_api",
    retry_policy=GENERATION_RETRY,
    description="For one segment: the ad made from the chosen seed photo and the brand image (Replicate FLUX "
                "Kontext, or the local compositor without a token), reused when its inputs are unchanged.",
)
def campaign_ad(context: dg.AssetExecutionContext, config: AdConfig, data_store: DataStore,
                image_generator: ImageGeneratorResource, mlflow_tracking: MlflowTracking) -> dg.MaterializeResult:
    layout = data_store.layout
    segments = load_segments(layout.segments_file)
    segment = segments.by_key(context.partition_key)
    candidates = read_candidates(layout.candidates_table, segment.key)
    generator = image_generator.generator()
    record = RunRecord(experiment=EXPERIMENT, run_name=f"{segment.key}-ad",
                       tags={"segment": segment.key, "stage": "ad", "dagster_run_id": context.run.run_id})
    ad = make_ad(segment, segments.brand, layout.brand_image.read_bytes(), candidates, config.seed_index,
                 generator, layout.mirror_table, layout.campaign_dir(segment.key), record,
                 api_slot=lambda: slot(layout.slots_dir, "image_api", image_generator.max_concurrent))
    row = ad.row
    record.params.update(
        segment=segment.key, segment_name=segment.name, subject=row["subject"], query=candidates["query"],
        seed_index=row["seed_index"], seed_path=row["seed_path"], generator=row["generator_id"],
        generator_parameters=row["parameters"], output_key=row["output_key"], prompt=row["prompt"])
    record.metrics.update(latency_s=row["latency_s"], cost_usd=row["cost_usd"], reused=float(row["reused"]))
    record.texts["prompt.txt"] = row["prompt"]
    record.texts["candidates.json"] = json.dumps(candidates["candidates"], indent=2, default=str)
    record.files.extend([p for p in (Path(candidates["contact_sheet"]), ad.path) if p and p.is_file()])
    if ad.failed:
        record.status = "FAILED"
        record.texts["error.txt"] = row["error"]
    store = mlflow_tracking.store(layout)
    row["mlflow_run_id"] = store.log(record)
    append_campaign(layout.campaigns_table, row)
    if ad.failed:
        # Only a busy, down or slow service is worth the step's retry policy; a refused input fails at once.
        raise dg.Failure(description=f"generation failed for segment {segment.key!r}: {row['error']}",
                         metadata={"segment": segment.name, **mlflow_metadata(store, row["mlflow_run_id"])},
                         allow_retries=ad.transient)
    return dg.MaterializeResult(metadata={
        "segment": segment.name,
        "ad": dg.MetadataValue.md(markdown_picture(ad.path, f"{segment.name}: ad")),
        "subject": row["subject"],
        "seed": row["seed_path"],
        "generator": row["generator_id"],
        "prompt": row["prompt"],
        "reused": ad.reused,
        "cost_usd": row["cost_usd"],
        "latency_s": round(row["latency_s"], 3),
        **mlflow_metadata(store, row["mlflow_run_id"]),
    })


def mlflow_metadata(store: MlflowStore, run_id: str) -> dict:
    url = store.run_url(run_id)
    return {"mlflow_run_id": run_id, **({"mlflow_run": dg.MetadataValue.url(url)} if url else {})}
