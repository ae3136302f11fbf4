"""Invariants of the catalog tables, checked after every catalog run.

- the quarantine holds at most a configured share of the folder's files (a folder of mostly bad
  files, or a broken decoder, should be noticed rather than silently leave the catalog small);
- the mirror holds exactly one row per distinct image of the manifest, with the manifest's paths.
"""

from __future__ import annotations

from pathlib import Path

from assets_pkg.catalog.mirror import desired_state
from assets_pkg.consistency import Report
from assets_pkg.delta_tables import read_table, sql_literal
from assets_pkg.layout import MANIFEST_SCHEMA, MIRROR_SCHEMA, QUARANTINE_SCHEMA

DEFAULT_MAX_QUARANTINE_RATE = 0.05



def parse_rate(text: str | float) -> float:
    """A share between 0 and 1 from a setting such as "0.05"; a clear error otherwise."""
    try:
        rate = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"quarantine rate limit {text!r} is not a number; use a share such as 0.05 for 5%") from None
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"quarantine rate limit {rate} is outside 0..1; use a share such as 0.05 for 5%")
    return rate


def quarantine_rate(quarantine_table: Path, stage: str, accepted: int, limit: float) -> Report:
    """The share of what `stage` looked at that it quarantined, against `limit`.

    `accepted` counts what the stage took in; the quarantine table says what it set aside.
    """
    rows = read_table(quarantine_table, QUARANTINE_SCHEMA, ["path", "reason"], f"stage = {sql_literal(stage)}")
    quarantined = rows.num_rows
    total = accepted + quarantined
    rate = quarantined / total if total else 0.0
    report = Report(facts={"quarantined": quarantined, "total": total, "rate": round(rate, 4), "limit": limit},
                    serious=False)
    if rate > limit:
        example = rows.slice(0, 1).to_pylist()[0]
        report.problems.append(
            f"{quarantined} of {total} files ({rate:.1%}) are quarantined at the {stage} stage, above the "
            f"limit of {limit:.1%}; e.g. {example['path']!r}: {example['reason']}. The quarantine table lists "
            "every file with its reason: fix or remove those files, or raise ADRAG_MAX_QUARANTINE_RATE")
    return report


def manifest_quarantine_rate(manifest_table: Path, quarantine_table: Path, limit: float) -> Report:
    """Files the folder scan quarantined, as a share of every file it found."""
    files = read_table(manifest_table, MANIFEST_SCHEMA, ["path"]).num_rows
    return quarantine_rate(quarantine_table, "catalog", files, limit)


def mirror_matches_manifest(mirror_table: Path, manifest_table: Path) -> Report:
    """One mirror row per distinct image of the manifest, carrying the manifest's paths and labels.

    An image missing from the mirror is only a warning: its file changed between the scan and the
    mirror sync, and the next run picks it up. Extra, duplicated or mislabelled rows are errors.
    """
    want = desired_state(read_table(manifest_table, MANIFEST_SCHEMA))
    mirror = read_table(mirror_table, MIRROR_SCHEMA, ["image_id", "paths", "labels"])
    ids = mirror["image_id"].to_pylist()
    have = {r["image_id"]: r for r in mirror.to_pylist()}
    report = Report(facts={"manifest_images": len(want), "mirror_images": len(ids)}, serious=False)
    duplicates = len(ids) - len(have)
    if duplicates:
        report.problems.append(f"the mirror holds {duplicates} duplicate rows for one image id")
        report.serious = True
    if extra := sorted(set(have) - set(want)):
        report.problems.append(f"the mirror holds {len(extra)} images that are no longer in the folder, "
                               f"e.g. {extra[0][:12]} at {list(have[extra[0]]['paths'])}")
        report.serious = True
    stale = sorted(i for i in set(have) & set(want)
                   if list(have[i]["paths"]) != want[i]["paths"] or list(have[i]["labels"]) != want[i]["labels"])
    if stale:
        first = stale[0]
        report.problems.append(f"the mirror has outdated paths or labels for {len(stale)} images, e.g. "
                               f"{list(have[first]['paths'])} instead of {want[first]['paths']}")
        report.serious = True
    if missing := sorted(set(want) - set(have)):
        report.problems.append(f"{len(missing)} images of the manifest are not in the mirror yet (changed on "
                               f"disk after the scan?), e.g. {want[missing[0]]['paths']}; the next catalog run "
                               "picks them up")
    report.facts.update(duplicates=duplicates, extra=len(extra), stale=len(stale), missing=len(missing))
    return report
