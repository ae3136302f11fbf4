"""The Dagster code location: definitions, resource wiring, jobs, schedules, sensors, and the CLI."""
