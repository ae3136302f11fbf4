"""Asset checks shared by every stage: the one adapter from a domain `Report` to a Dagster check result."""

from __future__ import annotations

import dagster as dg

from assets_pkg.consistency import Report


def check_result(report: Report, description: str | None = None, **metadata) -> dg.AssetCheckResult:
    """ERROR when the report is serious, WARN when the next run fixes it; the facts become metadata."""
    return dg.AssetCheckResult(
        passed=report.ok,
        severity=dg.AssetCheckSeverity.ERROR if report.serious else dg.AssetCheckSeverity.WARN,
        description=description or report.describe(),
        metadata={**report.facts, **metadata},
    )
