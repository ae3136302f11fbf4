"""Review stage: the rules of the review loop and its event log (Delta); no UI code, no Dagster."""
