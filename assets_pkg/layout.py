"""Where everything lives under the data directory (the local "volume").

One place names every table and folder so no stage builds paths of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataLayout:
    data_dir: Path
    images_dir: Path
    brand_image: Path
    segments_file: Path

    @classmethod
    def under(cls, data_dir: str | Path, images_dir: str | Path | None = None,
              brand_image: str | Path | None = None,
              segments_file: str | Path | None = None) -> "DataLayout":
        root = Path(data_dir).expanduser().resolve()
        return cls(
            data_dir=root,
            images_dir=Path(images_dir).expanduser().resolve() if images_dir else root / "images",
            brand_image=Path(brand_image).expanduser().resolve() if brand_image else root / "brand" / "brand.png",
            segments_file=Path(segments_file).expanduser().resolve() if segments_file else root / "segments.yaml",
        )

    # Delta tables ------------------------------------------------------------------------------
    @property
    def lake_dir(self) -> Path:
        return self.data_dir / "lake"

    @property
    def manifest_table(self) -> Path:
        return self.lake_dir / "image_manifest"

    @property
    def quarantine_table(self) -> Path:
        return self.lake_dir / "quarantine"

    @property
    def mirror_table(self) -> Path:
        return self.lake_dir / "image_mirror"

    @property
    def embeddings_table(self) -> Path:
        return self.lake_dir / "image_embeddings"

    @property
    def candidates_table(self) -> Path:
        return self.lake_dir / "campaign_candidates"

    @property
    def campaigns_table(self) -> Path:
        return self.lake_dir / "campaigns"

    # Other stores ------------------------------------------------------------------------------
    @property
    def lance_dir(self) -> Path:
        return self.data_dir / "lance"

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


SAFE_KEY = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


def require_safe_key(key: str) -> str:
    """Partition keys end up in file paths: accept only short `[a-z0-9-]` slugs."""
    if not isinstance(key, str) or not SAFE_KEY.match(key):
        raise ValueError(f"unsafe segment key {key!r}: expected 1-64 chars of [a-z0-9-], no leading/trailing dash")
    return key
