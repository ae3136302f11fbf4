"""Where everything lives under the data directory (the local "volume"), and what each table holds.

One place names every table and folder and states every table's schema, so no stage builds paths
of its own and a reader of any table finds its columns here.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from assets_pkg.storage import Location, ObjectLocation, S3Connection, location


@dataclass(frozen=True)
class DataLayout:
    """The lake, the index and the image folder may each be on object storage (`s3://`, see
    assets_pkg/storage.py); the brand image, the segments file, campaign outputs, slots and the
    MLflow directory are always local, under the data directory unless given."""

    data_dir: Path
    images_dir: Location
    brand_image: Path
    segments_file: Path
    lake_root: Location | None = None  # None: <data_dir>/lake
    index_root: Location | None = None  # None: <data_dir>/lance

    @classmethod
    def under(cls, data_dir: str | Path, images_dir: str | Path | None = None,
              brand_image: str | Path | None = None,
              segments_file: str | Path | None = None, lake: str | Path | None = None,
              index: str | Path | None = None, connection: S3Connection | None = None) -> "DataLayout":
        """`images_dir`, `lake` and `index` may be `s3://` URIs, reached through `connection`."""
        root = Path(data_dir).expanduser().resolve()
        return cls(
            data_dir=root,
            images_dir=location(images_dir, connection) if images_dir else root / "images",
            brand_image=Path(brand_image).expanduser().resolve() if brand_image else root / "brand" / "brand.png",
            segments_file=Path(segments_file).expanduser().resolve() if segments_file else root / "segments.yaml",
            lake_root=location(lake, connection) if lake else None,
            index_root=location(index, connection) if index else None,
        )

    @property
    def on_object_storage(self) -> bool:
        return any(isinstance(loc, ObjectLocation) for loc in (self.images_dir, self.lake_root, self.index_root))

    # Delta tables ------------------------------------------------------------------------------
    @property
    def lake_dir(self) -> Location:
        return self.lake_root if self.lake_root is not None else self.data_dir / "lake"

    @property
    def manifest_table(self) -> Location:
        return self.lake_dir / "image_manifest"

    @property
    def quarantine_table(self) -> Location:
        return self.lake_dir / "quarantine"

    @property
    def mirror_table(self) -> Location:
        return self.lake_dir / "image_mirror"

    @property
    def mirror_bytes_table(self) -> Location:
        return mirror_bytes_table(self.mirror_table)

    @property
    def embeddings_table(self) -> Location:
        return self.lake_dir / "image_embeddings"

    @property
    def candidates_table(self) -> Location:
        return self.lake_dir / "campaign_candidates"

    @property
    def campaigns_table(self) -> Location:
        return self.lake_dir / "campaigns"

    @property
    def failures_table(self) -> Location:
        return self.lake_dir / "run_failures"

    @property
    def reviews_table(self) -> Location:
        return self.lake_dir / "campaign_reviews"

    # Other stores ------------------------------------------------------------------------------
    @property
    def lance_dir(self) -> Location:
        return self.index_root if self.index_root is not None else self.data_dir / "lance"

    @property
    def slots_dir(self) -> Path:
        return self.data_dir / ".slots"

    @property
    def campaigns_dir(self) -> Path:
        return self.data_dir / "campaigns"

    @property
    def mlflow_dir(self) -> Path:
        return self.data_dir / "mlflow"

    def campaign_dir(self, segment_key: str) -> Path:
        """Output folder of one segment; the key is a validated slug, never raw user text."""
        return self.campaigns_dir / require_safe_key(segment_key)


def mirror_bytes_table(mirror_table: Location) -> Location:
    """The image bytes of the mirror at `mirror_table`: a sibling table (never inside it: a vacuum of
    the metadata table would delete files it does not know)."""
    return mirror_table.with_name(mirror_table.name + "_bytes")


def slugify(text: str, max_length: int = 64) -> str:
    """ASCII `[a-z0-9-]` slug; empty when nothing usable is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:max_length].rstrip("-")


SAFE_KEY = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


def require_safe_key(key: str) -> str:
    """Partition keys end up in file paths: accept only short `[a-z0-9-]` slugs."""
    if not isinstance(key, str) or not SAFE_KEY.match(key):
        raise ValueError(f"unsafe segment key {key!r}: expected 1-64 chars of [a-z0-9-], no leading/trailing dash")
    return key


# Table schemas ---------------------------------------------------------------------------------------

MANIFEST_SCHEMA = pa.schema([  # lake/image_manifest: what the last scan found, one row per image file
    ("path", pa.string()),            # relative to the source folder, POSIX separators
    ("image_id", pa.string()),        # sha256 of the bytes
    ("size_bytes", pa.int64()),
    ("mtime_ns", pa.int64()),
    ("format", pa.string()),
    ("width", pa.int32()),            # as displayed, EXIF orientation applied
    ("height", pa.int32()),
    ("labels", pa.list_(pa.string())),
    ("etag", pa.string()),            # the object's ETag when the folder is on object storage; null for local files
])
QUARANTINE_SCHEMA = pa.schema([  # lake/quarantine: what a stage could not use, keyed by (stage, path)
    ("stage", pa.string()),
    ("path", pa.string()),
    ("image_id", pa.string()),  # content hash where the bytes could be read
    ("reason", pa.string()),
    ("first_seen", pa.timestamp("us", tz="UTC")),
    ("last_seen", pa.timestamp("us", tz="UTC")),
    ("attempts", pa.int64()),
])
MIRROR_SCHEMA = pa.schema([  # lake/image_mirror: one row per distinct image now in the folder
    ("image_id", pa.string()),
    ("format", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("size_bytes", pa.int64()),
    ("labels", pa.list_(pa.string())),
    ("paths", pa.list_(pa.string())),  # every current path with these bytes, sorted
    ("added_at", pa.timestamp("us", tz="UTC")),
])
MIRROR_BYTES_SCHEMA = pa.schema([  # lake/image_mirror_bytes: the bytes, append-only, partitioned by batch
    ("image_id", pa.string()),
    ("batch", pa.int64()),       # partition: the append commit that wrote the row
    ("size_bytes", pa.int64()),  # len(bytes), so dead bytes are counted without reading them
    ("bytes", pa.binary()),
])
EMBEDDINGS_SCHEMA = pa.schema([  # lake/image_embeddings: (image_id, model_key) -> float32 unit vector
    ("image_id", pa.string()),
    ("model_key", pa.string()),
    ("vector", pa.list_(pa.float32())),
    ("embedded_at", pa.timestamp("us", tz="UTC")),
])
CANDIDATE_STRUCT = pa.struct([
    ("rank", pa.int32()), ("image_id", pa.string()), ("path", pa.string()), ("score", pa.float64()),
])
NEAR_DUPLICATE_STRUCT = pa.struct([  # a retrieved photo dropped as near-identical to a chosen candidate
    ("image_id", pa.string()), ("path", pa.string()), ("score", pa.float64()),
    ("duplicate_of_image_id", pa.string()), ("duplicate_of_path", pa.string()),
    ("similarity", pa.float64()),  # cosine between the two photos
])
CANDIDATES_SCHEMA = pa.schema([  # lake/campaign_candidates: the current candidates, one row per segment
    ("segment_key", pa.string()),
    ("segment_name", pa.string()),
    ("description", pa.string()),
    ("subject", pa.string()),
    ("subject_method", pa.string()),
    ("query", pa.string()),
    ("model_key", pa.string()),
    ("candidates", pa.list_(CANDIDATE_STRUCT)),
    ("contact_sheet", pa.string()),
    ("created_at", pa.timestamp("us", tz="UTC")),
    # Added with diverse retrieval: null in rows written before it (and read as null from older tables).
    ("near_duplicates", pa.list_(NEAR_DUPLICATE_STRUCT)),
])
CAMPAIGNS_SCHEMA = pa.schema([  # lake/campaigns: one row per generation, appended
    ("segment_key", pa.string()),
    ("segment_name", pa.string()),
    ("description", pa.string()),
    ("subject", pa.string()),
    ("seed_index", pa.int32()),
    ("seed_image_id", pa.string()),
    ("seed_path", pa.string()),
    ("prompt", pa.string()),
    ("generator_id", pa.string()),
    ("parameters", pa.string()),  # JSON
    ("output_key", pa.string()),
    ("status", pa.string()),  # "succeeded", "failed", or "superseded" (tried, below the quality bar, not chosen)
    ("error", pa.string()),  # why it failed; null on success
    ("output_path", pa.string()),
    ("reused", pa.bool_()),  # true when the output existed and nothing was paid
    ("latency_s", pa.float64()),
    ("cost_usd", pa.float64()),
    ("mlflow_run_id", pa.string()),
    ("created_at", pa.timestamp("us", tz="UTC")),
    ("quality", pa.string()),  # JSON: the CLIP scores, the bar, and every attempt tried (rank, cost, scores)
])
FAILURES_SCHEMA = pa.schema([  # lake/run_failures: one row per failed Dagster run, secrets scrubbed
    ("run_id", pa.string()),
    ("job_name", pa.string()),
    ("partition_key", pa.string()),
    ("failed_at", pa.timestamp("us", tz="UTC")),
    ("failed_steps", pa.list_(pa.string())),
    ("error", pa.string()),
])
REVIEWS_SCHEMA = pa.schema([  # lake/campaign_reviews: the review studio's event log, append-only
    ("review_id", pa.string()),       # one review of a segment, from its start to its approval
    ("segment_key", pa.string()),
    ("seq", pa.int64()),              # the event's place in its segment's history: 1, 2, 3 ...
    ("at", pa.timestamp("us", tz="UTC")),
    ("reviewer", pa.string()),        # as given, capped at 100 characters
    ("event", pa.string()),           # see assets_pkg/review/events.py for the names and meanings
    ("subject", pa.string()),
    ("candidate_rank", pa.int32()),   # 1-3 as the reviewer sees it; null when the event names none
    ("image_id", pa.string()),        # the approved photo, on "approved" events only
    ("candidates", pa.string()),      # JSON [{rank 1-3, image_id, path, score}] on "candidates_retrieved"
    ("note", pa.string()),            # the reviewer's words or the reason, as given, capped at 2,000 characters
    ("segment_digest", pa.string()),  # on "approved" events: the segment's name and description when approved
                                      # (assets_pkg/campaigns/approvals.py); a change since needs review
])
