"""The nightly re-embedding: re-runs the incremental catalog job, which embeds only what changed; and
the index's freshness policy, which fails when the index is older than the schedule allows.

The cron and timezone come from ADRAG_REFRESH_CRON and ADRAG_REFRESH_TIMEZONE when Dagster loads
the code location (a schedule's cron cannot be a run-time `dg.EnvVar`); a bad value stops the load
with a message naming the variable.
"""

from __future__ import annotations

import itertools
import time
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg
from dagster._utils.schedules import cron_string_iterator  # Dagster's own cron arithmetic (no public API)

from orchestration.jobs import TRIGGER_TAG, refresh_catalog


def nightly_refresh_schedule(cron: str, timezone: str) -> dg.ScheduleDefinition:
    """The `nightly_refresh_catalog` schedule at `cron` in `timezone` (an IANA name)."""
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"ADRAG_REFRESH_TIMEZONE={timezone!r} is not an IANA timezone; use e.g. UTC or "
                         "Europe/Berlin") from None
    try:
        return dg.ScheduleDefinition(
            name="nightly_refresh_catalog",
            job=refresh_catalog,
            cron_schedule=cron,
            execution_timezone=timezone,
            tags={TRIGGER_TAG: "schedule"},
            description=f"At `{cron}` ({timezone}): scan the image folder, embed new and changed images (all of "
                        "them when the model changed), sync the index. Set ADRAG_REFRESH_CRON / "
                        "ADRAG_REFRESH_TIMEZONE to move it.",
        )
    except dg.DagsterInvalidDefinitionError as err:
        raise ValueError(f"ADRAG_REFRESH_CRON={cron!r} is not a valid cron schedule "
                         f"(e.g. '0 2 * * *' for 02:00 every day): {err}") from None


# How long a refresh may take after its tick before the index counts as late.
REFRESH_GRACE = timedelta(hours=1)


def index_freshness_policy(cron: str, timezone: str) -> dg.FreshnessPolicy:
    """The index fails freshness when it was last materialized longer ago than the schedule's longest
    gap between two ticks plus REFRESH_GRACE: 25 hours for a nightly refresh. Dagster's freshness
    daemon (on in the instance adrag writes) evaluates it; the asset's page and health show it."""
    return dg.FreshnessPolicy.time_window(fail_window=longest_gap(cron, timezone) + REFRESH_GRACE)


def longest_gap(cron: str, timezone: str, ticks: int = 400) -> timedelta:
    """The longest time between two consecutive ticks of `cron` over its next `ticks` ticks (over a year
    for a nightly schedule, so daylight saving and a weekly or monthly schedule's longest gap are in it)."""
    times = list(itertools.islice(cron_string_iterator(time.time(), cron, timezone), ticks))
    return max(later - earlier for earlier, later in itertools.pairwise(times))
