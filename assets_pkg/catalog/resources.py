"""The catalog checks' thresholds as a Dagster resource (configured from the environment at run time)."""

from __future__ import annotations

import dagster as dg

from assets_pkg.catalog.consistency import DEFAULT_MAX_QUARANTINE_RATE, parse_rate


class QuarantineLimit(dg.ConfigurableResource):
    """The share of files a stage may quarantine before its check warns (0.05 = 5%).

    A string field so `dg.EnvVar("ADRAG_MAX_QUARANTINE_RATE")` can set it (EnvVar gives str or int).
    """

    max_rate: str = str(DEFAULT_MAX_QUARANTINE_RATE)

    @property
    def rate(self) -> float:
        return parse_rate(self.max_rate)
