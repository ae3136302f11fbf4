"""Writing the demo catalog: one labelled folder of photos per subject, and the brand image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from assets_pkg.atomic_files import write_atomically
from demo_catalog.animals import ANIMALS
from demo_catalog.brand import make_brand_image
from demo_catalog.encoding import encode_image
from demo_catalog.photo import draw_demo_photo

SUBJECTS = ("dog", "cat", "parrot", "rabbit", "goldfish", "horse")


@dataclass(frozen=True)
class DemoCatalog:
    images_dir: Path
    brand_image: Path
    image_paths: list[Path]


def make_demo_catalog(data_dir: Path, images_per_subject: int = 12, subjects: Sequence[str] = SUBJECTS,
                      seed: int = 0, size: tuple[int, int] = (640, 480)) -> DemoCatalog:
    """Write the demo photos and the brand image under `data_dir`; return where they are.

    Formats alternate JPEG/PNG by index, so with two or more images every subject has both.
    A file that already exists is left exactly as it is: a re-run is cheap, keeps every mtime (so
    the catalog scan's (size, mtime) shortcut holds) and never clobbers a photo or logo someone
    put in its place. Delete the folder to draw it afresh, e.g. with another seed or size.
    """
    unknown = [s for s in subjects if s not in ANIMALS]
    if unknown:
        raise ValueError(f"no drawing for subjects {unknown}; known: {sorted(ANIMALS)}")
    if images_per_subject < 1:
        raise ValueError("images_per_subject must be at least 1")
    if seed < 0:
        raise ValueError("seed must be a non-negative integer")
    width, height = size
    if width < 64 or height < 64:
        raise ValueError(f"size {size} is too small to draw in; use at least 64x64")

    data_dir = Path(data_dir)
    images_dir = data_dir / "images"
    paths = []
    for subject in subjects:
        for index in range(images_per_subject):
            ext, fmt = (".jpg", "JPEG") if index % 2 == 0 else (".png", "PNG")
            path = images_dir / subject / f"{subject}-{index + 1:02d}{ext}"
            if not path.exists():
                picture = draw_demo_photo(subject, index, seed=seed, size=(width, height))
                write_atomically(path, encode_image(picture, fmt))
            paths.append(path)
    brand = data_dir / "brand" / "brand.png"
    if not brand.exists():
        make_brand_image(brand)
    return DemoCatalog(images_dir=images_dir, brand_image=brand, image_paths=paths)
