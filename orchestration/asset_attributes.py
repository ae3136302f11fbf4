"""Who owns each asset, how the catalog filters it, and which version of its logic made it.

Set when the code location loads, from the resources it will run with (their `dg.EnvVar` fields read
from the environment then):
- owners and a `stage` tag per asset group (the Catalog's owner and tag filters);
- code versions where the logic has one: the embeddings and the index are the CLIP model's (a new
  model or weights marks them, and what follows them, out of date in the UI), the ad is the
  generator's id (`replicate/<model>` or `local-compositor/vN`);
- the index's freshness policy (from the refresh schedule, `schedules.index_freshness_policy`);
- the ad's kind: `replicate` only when a Replicate token is set, else `pillow` (the local compositor).
  A run reads the token when it starts, so after changing it, reload the code location;
- the segments' display names next to their partition keys in the campaign assets' descriptions:
  Dagster's partition pickers show keys only (it has no partition labels: dagster-io/dagster#16999).
  Keys are slugs of the names unless the file gives one; the list is the file's at the last load.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import dagster as dg

from assets_pkg.campaigns.generators.compositor import LocalCompositor
from assets_pkg.campaigns.segments import load_segments
from assets_pkg.resources import DataStore

OWNERS = {  # asset group -> owners (emails or team:<name>)
    "catalog": ["team:data"],
    "embeddings": ["team:data"],
    "index": ["team:data"],
    "campaigns": ["team:marketing", "team:data"],
}
KIND_TAG = "dagster/kind/"


def with_asset_attributes(assets: Sequence[dg.AssetsDefinition], resources: Mapping[str, Any],
                          environ: Mapping[str, str], index_freshness: dg.FreshnessPolicy) -> Sequence[dg.AssetsDefinition]:
    clip, generator = resources["clip"], resources["image_generator"]
    model_version = f"{value_now(clip.model_name, environ)}:{value_now(clip.weights, environ)}"
    token = value_now(generator.replicate_api_token, environ)
    generator_id = (f"replicate/{value_now(generator.replicate_model, environ)}" if token
                    else LocalCompositor.generator_id)
    code_versions = {"image_embeddings": model_version, "image_index": model_version, "campaign_ad": generator_id}
    ad_kinds = {"replicate" if token else "pillow", "mlflow"}
    segment_names = segment_names_markdown(resources["data_store"], environ)

    def attributes(spec: dg.AssetSpec) -> dg.AssetSpec:
        name = spec.key.to_user_string()
        kinds = ad_kinds if name == "campaign_ad" else spec.kinds
        # Kinds live in the tags too: drop the old kind tags, or `replicate` would stay.
        tags = {key: value for key, value in spec.tags.items() if not key.startswith(KIND_TAG)}
        description = spec.description + segment_names if spec.group_name == "campaigns" else spec.description
        return spec.replace_attributes(
            description=description, owners=OWNERS[spec.group_name], tags={**tags, "stage": spec.group_name}, kinds=kinds,
            code_version=code_versions.get(name, spec.code_version),
            freshness_policy=index_freshness if name == "image_index" else spec.freshness_policy)

    return dg.map_asset_specs(attributes, assets)


def segment_names_markdown(data_store: DataStore, environ: Mapping[str, str]) -> str:
    """"Partition key: display name" for each segment of the file; empty when there is no readable file
    (the segments sensor and the runs say what is wrong with it)."""
    layout = DataStore(data_dir=value_now(data_store.data_dir, environ) or "data",
                       segments_file=value_now(data_store.segments_file, environ)).layout
    try:
        segments = load_segments(layout.segments_file).segments
    except (FileNotFoundError, ValueError):
        return ""
    if not segments:
        return ""
    lines = "\n".join(f"- `{s.key}`: {s.name}" for s in segments)
    return f"\n\nSegments (partition key: name) in {layout.segments_file} when the code location loaded:\n{lines}"


def value_now(value: Any, environ: Mapping[str, str]) -> Any:
    """A resource field as a run would read it: a `dg.EnvVar` from `environ`, anything else as it is."""
    if isinstance(value, dg.EnvVar):
        return environ.get(value.env_var_name, "")
    return value
