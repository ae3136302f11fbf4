"""Answers stage: a question answered by a vision chat model from the top-k images the index retrieves
(or from the model alone, the baseline), its citations checked against what was retrieved, each answer an
MLflow run. After the index in the data flow; no Dagster."""
