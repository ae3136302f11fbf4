"""Generate (or reuse) the ad of one segment from its chosen seed photo and the brand image.

Generation is idempotent: the output file is named by a hash of (seed bytes, brand bytes, prompt,
generator id, parameters). When that file exists, the stored ad is reused and nothing is paid.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from assets_pkg.atomic_files import remove_orphan_temp_files, write_atomically
from assets_pkg.campaigns.approvals import REVIEW_NONE, ApprovalCheck
from assets_pkg.campaigns.generators.base import (
    GenerationError,
    GenerationRequest,
    ImageGenerator,
    TransientGenerationError,
)
from assets_pkg.campaigns.prompt import build_headline, build_prompt
from assets_pkg.campaigns.segments import Brand, Segment
from assets_pkg.campaigns.store import ad_path, output_key, pending_path, read_pending, write_pending
from assets_pkg.catalog.mirror import read_image_bytes
from assets_pkg.tracking import RunRecord


@dataclass
class AdResult:
    row: dict  # a campaigns row (mlflow_run_id filled once the run is logged)
    path: Path | None  # None when generation failed
    reused: bool
    transient: bool = False  # failed in a way a later retry may fix (service busy, down or slow)
    review: ApprovalCheck = field(default_factory=lambda: ApprovalCheck(REVIEW_NONE))  # the approval it was made under
    attempts: list = field(default_factory=list)  # quality.Attempt: every ad tried for the segment in this step
    spent_usd: float = 0.0  # what those attempts cost

    @property
    def failed(self) -> bool:
        return self.row["status"] == "failed"


def make_ad(segment: Segment, brand: Brand, brand_image: bytes, candidates: dict, seed_index: int,
            generator: ImageGenerator, mirror_table: Path, segment_dir: Path, record: RunRecord) -> AdResult:
    """The ad from candidate `seed_index` of `candidates` (a campaign_candidates row); `record` gets every
    step, parameter, metric and file of the MLflow run."""
    remove_orphan_temp_files(segment_dir)
    hits = candidates["candidates"]
    if not 0 <= seed_index < len(hits):
        raise ValueError(f"seed_index {seed_index} is out of range: segment {segment.key!r} has {len(hits)} candidates")
    seed = hits[seed_index]
    with record.step("load_seed", seed_index=seed_index, image_id=seed["image_id"], path=seed["path"]) as out:
        seed_bytes = read_image_bytes(mirror_table, [seed["image_id"]]).get(seed["image_id"])
        if seed_bytes is None:
            raise LookupError(f"seed image {seed['path']} ({seed['image_id'][:12]}) left the mirror; "
                              "re-materialize campaign_candidates")
        out["bytes"] = len(seed_bytes)
    with record.step("build_prompt", subject=candidates["subject"]) as out:
        prompt = build_prompt(segment, candidates["subject"], brand)
        out["prompt"] = prompt
    parameters = generator.parameters()
    key = output_key(seed_bytes, brand_image, prompt, generator.generator_id, parameters)
    path = ad_path(segment_dir, key)
    started = time.perf_counter()
    error = None
    transient = False
    with record.step("generate", generator=generator.generator_id, output_key=key) as out:
        reused = path.is_file()
        cost = 0.0
        if not reused:
            pending = pending_path(path)
            request = GenerationRequest(seed_image=seed_bytes, brand_image=brand_image, prompt=prompt,
                                        headline=build_headline(segment, brand))
            try:
                # A prediction paid for by an earlier run (killed, or failed after paying) is resumed, not paid again.
                result = generator.generate(
                    request, on_created=lambda prediction_id: write_pending(pending, prediction_id),
                    resume_prediction_id=read_pending(pending))
            except GenerationError as err:  # the segment fails with its reason; nothing is written
                error = str(err)
                transient = isinstance(err, TransientGenerationError)
                # A paid prediction whose output can still be fetched keeps its id for the next run to collect.
                if not err.resumable:
                    pending.unlink(missing_ok=True)
            else:
                write_atomically(path, result.png)
                cost = result.cost_usd
                out["details"] = result.details
                pending.unlink(missing_ok=True)
        out.update(reused=reused, path=None if error else str(path), cost_usd=cost, error=error)
    latency = time.perf_counter() - started
    row = {
        "segment_key": segment.key, "segment_name": segment.name, "description": segment.description,
        "subject": candidates["subject"], "seed_index": seed_index, "seed_image_id": seed["image_id"],
        "seed_path": seed["path"], "prompt": prompt, "generator_id": generator.generator_id,
        "parameters": json.dumps(parameters, sort_keys=True), "output_key": key,
        "status": "failed" if error else "succeeded", "error": error, "output_path": None if error else str(path),
        "reused": reused, "latency_s": latency, "cost_usd": cost, "mlflow_run_id": None,
        "created_at": datetime.now(timezone.utc), "quality": None,
    }
    record.params.update(
        segment=segment.key, segment_name=segment.name, subject=row["subject"], query=candidates["query"],
        seed_index=seed_index, seed_path=row["seed_path"], generator=row["generator_id"],
        generator_parameters=row["parameters"], output_key=key, prompt=prompt,
        reused=str(reused).lower())  # a yes/no, not a number to plot
    record.metrics.update(latency_s=round(latency, 3), cost_usd=cost)
    record.trace_outputs = {"ad": row["output_path"], "reused": reused, "error": error}
    record.texts["prompt.txt"] = prompt
    record.texts["candidates.json"] = json.dumps(candidates["candidates"], indent=2, default=str)
    record.files.extend(p for p in (Path(candidates["contact_sheet"]), None if error else path) if p and p.is_file())
    if error:
        record.status = "FAILED"
        record.texts["error.txt"] = error
    return AdResult(row=row, path=None if error else path, reused=reused, transient=transient)
