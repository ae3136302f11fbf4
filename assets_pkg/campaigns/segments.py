"""The segments file: audience segments a data team writes, turned into safe partition keys.

```yaml
brand: {name: Bricks, tagline: "Real food for real pets"}
segments:
  - name: Young urban professionals
    description: busy city dwellers in small apartments who want an easy companion
    subject: french bulldog        # optional: skip the zero-shot subject proposal
    labels: [dog]                  # optional: only retrieve images carrying one of these labels
    key: young-urban               # optional: the partition key; derived from the name otherwise
```
Keys are `[a-z0-9-]` slugs of at most 64 characters, unique; display names and descriptions stay in
the file and in the campaign table. Entries that cannot be used are reported, not guessed at.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from assets_pkg.layout import SAFE_KEY, slugify

MAX_KEY_LENGTH = 64


@dataclass(frozen=True)
class Segment:
    key: str
    name: str
    description: str
    subject: str | None = None
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Brand:
    name: str = "Bricks"
    tagline: str = ""


@dataclass
class SegmentsFile:
    brand: Brand
    segments: list[Segment]
    errors: list[str] = field(default_factory=list)  # entries that could not be used, and why

    def by_key(self, key: str) -> Segment:
        for segment in self.segments:
            if segment.key == key:
                return segment
        raise KeyError(f"segment {key!r} is not in the segments file (known: {', '.join(s.key for s in self.segments)})")




def load_segments(path: Path) -> SegmentsFile:
    if not path.is_file():
        raise FileNotFoundError(f"segments file {path} does not exist")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"segments file {path} is not valid YAML: {err}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("segments", []), list):
        raise ValueError(f"segments file {path}: expected a mapping with a 'segments' list")
    brand_doc = doc.get("brand") or {}
    brand = Brand(name=str(brand_doc.get("name") or "Bricks"), tagline=str(brand_doc.get("tagline") or ""))
    parsed = SegmentsFile(brand=brand, segments=[])
    taken: set[str] = set()
    for position, entry in enumerate(doc.get("segments") or [], start=1):
        try:
            segment = _parse_entry(entry, taken)
        except ValueError as err:
            parsed.errors.append(f"segment #{position}: {err}")
            continue
        taken.add(segment.key)
        parsed.segments.append(segment)
    return parsed


def _parse_entry(entry: object, taken: set[str]) -> Segment:
    if not isinstance(entry, dict):
        raise ValueError("expected a mapping with at least 'name' and 'description'")
    name = " ".join(str(entry.get("name") or "").split())
    description = " ".join(str(entry.get("description") or "").split())
    if not name:
        raise ValueError("missing 'name'")
    if not description:
        raise ValueError(f"{name!r}: missing 'description'")
    explicit_key = entry.get("key")
    if explicit_key is not None:
        key = str(explicit_key)
        if not SAFE_KEY.match(key):
            raise ValueError(f"{name!r}: key {key!r} must be 1-{MAX_KEY_LENGTH} chars of [a-z0-9-]")
        if key in taken:
            raise ValueError(f"{name!r}: key {key!r} is already used by another segment")
    else:
        key = _unique(slugify(name, MAX_KEY_LENGTH) or "segment-" + hashlib.sha256(name.encode()).hexdigest()[:8], taken)
    labels = entry.get("labels") or []
    if isinstance(labels, str):
        labels = [labels]
    subject = " ".join(str(entry.get("subject") or "").split()) or None
    return Segment(key=key, name=name, description=description, subject=subject,
                   labels=tuple(" ".join(str(label).lower().split()) for label in labels if str(label).strip()))


def _unique(slug: str, taken: set[str]) -> str:
    if slug not in taken:
        return slug
    for n in range(2, 10_000):
        suffix = f"-{n}"
        candidate = slug[:MAX_KEY_LENGTH - len(suffix)].rstrip("-") + suffix
        if candidate not in taken:
            return candidate
    raise ValueError(f"cannot make a unique key from {slug!r}")
