"""Whether each segment's ad is really there: the file its campaigns row names exists and decodes as an
image, and the Dagster materialization of the segment says the same file (the row and the asset agree)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from assets_pkg.consistency import Report


def ads_on_disk(latest_rows: dict[str, dict], materialized_files: dict[str, str | None]) -> Report:
    """`latest_rows`: each segment's newest campaigns row; `materialized_files`: the `ad_file` of each
    segment's latest `campaign_ad` materialization (None when it has none). Serious: a missing or broken
    ad is not fixed by waiting; the segment's next run makes it again."""
    report = Report()
    checked = 0
    for key, row in sorted(latest_rows.items()):
        if row.get("status") != "succeeded":
            continue
        checked += 1
        path = row.get("output_path") or ""
        if problem := _unreadable(Path(path)):
            report.problems.append(f"{key}: the ad {path} {problem}")
        materialized = materialized_files.get(key)
        if materialized is not None and materialized != path:
            report.problems.append(f"{key}: the campaigns row names {path} but the latest materialization "
                                   f"made {materialized}")
    report.facts.update(ads_checked=checked, ads_with_problems=len({p.split(":")[0] for p in report.problems}))
    return report


def _unreadable(path: Path) -> str | None:
    if not path.is_file():
        return "is missing"
    try:
        with Image.open(path) as image:
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        return f"does not decode: {err}"
    return None
