"""The nightly re-embedding: re-runs the incremental catalog job, which embeds only what changed."""

import dagster as dg

from orchestration.jobs import refresh_catalog

nightly_refresh_catalog = dg.ScheduleDefinition(
    name="nightly_refresh_catalog",
    job=refresh_catalog,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    description="Every night at 02:00 UTC: scan the folder, embed new and changed images, sync the index.",
)
