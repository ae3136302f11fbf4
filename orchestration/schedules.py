"""The nightly re-embedding: re-runs the incremental catalog job, which embeds only what changed.

The cron and timezone come from ADRAG_REFRESH_CRON and ADRAG_REFRESH_TIMEZONE when Dagster loads
the code location (a schedule's cron cannot be a run-time `dg.EnvVar`); a bad value stops the load
with a message naming the variable.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg

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
