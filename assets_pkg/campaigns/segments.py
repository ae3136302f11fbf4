"""The segments file: audience segments a data team writes, turned into safe partition keys.

```yaml
brand: {name: Bricks, tagline: "Real food for real pets"}
segments:
  - name: Young urban professionals
    description: busy city dwellers in small apartments who want an easy companion
    subject: french bulldog        # optional: skip the zero-shot subject proposal
    labels: [dog]                  # optional: only retrieve images carrying one of these labels
    key: young-urban               # optional: the partition key; derived from the name otherwise
    reference_image: dog/park.jpg  # optional: a photo fused into the retrieval query (path relative to
                                   # the images folder, else to the data directory)
    reference_weight: 0.5          # optional: its share of the query, 0..1 (default 0.5)
```
Keys are `[a-z0-9-]` slugs of at most 64 characters, unique; display names and descriptions stay in
the file and in the campaign table. Entries that cannot be used are reported, not guessed at. Two
entries with one key (the same name, or names that slug alike) make the whole file invalid, naming
both: a key carries a segment's partitions, ads and review history, so a numbered suffix would hand
one segment's history to the other when the file's order changes. A file that is not valid YAML is
one error naming the line. A
reference photo's path must be relative and stay inside those folders; whether the file exists is
checked when the segment's candidates are retrieved (`reference_image_path`), which fail naming the
segment when it does not.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import yaml

from assets_pkg.layout import SAFE_KEY, slugify

MAX_KEY_LENGTH = 64
DEFAULT_REFERENCE_WEIGHT = 0.5  # the query's image weight (`assets_pkg.index.queries`), text the rest


@dataclass(frozen=True)
class Segment:
    key: str
    name: str
    description: str
    subject: str | None = None
    labels: tuple[str, ...] = ()
    reference_image: str | None = None  # as written: relative to the images folder, else the data directory
    reference_weight: float = DEFAULT_REFERENCE_WEIGHT


@dataclass(frozen=True)
class Brand:
    name: str = "Bricks"
    tagline: str = ""


class UnknownSegment(KeyError):
    """A partition key (or a `--segments` key) that names no segment of the file: a partition added by hand."""

    def __str__(self) -> str:  # KeyError's own would quote the message
        return str(self.args[0])


@dataclass
class SegmentsFile:
    brand: Brand
    segments: list[Segment]
    errors: list[str] = field(default_factory=list)  # entries that could not be used, and why
    path: Path | None = None

    def by_key(self, key: str) -> Segment:
        for segment in self.segments:
            if segment.key == key:
                return segment
        raise UnknownSegment(
            f"{key!r} is not a segment of {self.path or 'the segments file'} (known: "
            f"{', '.join(s.key for s in self.segments) or 'none'}): segment partitions come from that file, so add "
            "the segment there; the segments sensor removes partitions added by hand")


def load_segments(path: Path) -> SegmentsFile:
    """The file's brand and usable segments, with the entries it could not use in `errors`.
    `FileNotFoundError` when there is no file; `ValueError` (one line, naming the file and the line)
    when it cannot be read, is not YAML, has no segments list, or gives two segments one key."""
    if not path.is_file():
        raise FileNotFoundError(f"segments file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"segments file {path} is not valid YAML: {_yaml_problem(err)}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"segments file {path} cannot be read: {err}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("segments", []), list):
        raise ValueError(f"segments file {path}: expected a mapping with a 'segments' list")
    brand_doc = doc.get("brand") or {}
    brand = Brand(name=str(brand_doc.get("name") or "Bricks"), tagline=str(brand_doc.get("tagline") or ""))
    parsed = SegmentsFile(brand=brand, segments=[], path=path)
    lines = _entry_lines(text)
    by_key: dict[str, list[tuple[int, Segment]]] = {}
    for position, entry in enumerate(doc.get("segments") or [], start=1):
        try:
            segment = _parse_entry(entry)
        except ValueError as err:
            parsed.errors.append(f"segment #{position}{_on_line(lines, position)}: {err}")
            continue
        by_key.setdefault(segment.key, []).append((position, segment))
        parsed.segments.append(segment)
    if clashes := [entries for entries in by_key.values() if len(entries) > 1]:
        raise ValueError(f"segments file {path}: " + "; ".join(
            " and ".join(f"segment #{position} {segment.name!r}{_on_line(lines, position)}" for position, segment in entries)
            + f" both have the key {entries[0][1].key!r}" for entries in clashes)
            + ": give each segment its own name or an explicit `key:` (a key carries its segment's ads and "
              "review history)")
    return parsed


def _yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error on one line: where (1-based line and column) and what, and what it was inside."""
    mark, problem = getattr(err, "problem_mark", None), getattr(err, "problem", None)
    if mark is None or not problem:
        return " ".join(str(err).split())
    where = f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context and context_mark is not None and context_mark.line != mark.line:
        where += f" ({context} that starts on line {context_mark.line + 1})"
    return " ".join(where.split())


def _entry_lines(text: str) -> dict[int, int]:
    """1-based position in the segments list -> the 1-based line its entry starts on (for messages)."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(root, yaml.MappingNode):
        return {}
    for key, value in root.value:
        if key.value == "segments" and isinstance(value, yaml.SequenceNode):
            return {position: item.start_mark.line + 1 for position, item in enumerate(value.value, start=1)}
    return {}


def _on_line(lines: dict[int, int], position: int) -> str:
    return f" (line {lines[position]})" if position in lines else ""


def _parse_entry(entry: object) -> Segment:
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
    else:
        key = slugify(name, MAX_KEY_LENGTH) or "segment-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    labels = entry.get("labels") or []
    if isinstance(labels, str):
        labels = [labels]
    subject = " ".join(str(entry.get("subject") or "").split()) or None
    reference, weight = _reference(entry, name)
    return Segment(key=key, name=name, description=description, subject=subject,
                   labels=tuple(" ".join(str(label).lower().split()) for label in labels if str(label).strip()),
                   reference_image=reference, reference_weight=weight)


def _reference(entry: dict, name: str) -> tuple[str | None, float]:
    reference = entry.get("reference_image")
    if reference is None or not str(reference).strip():
        if entry.get("reference_weight") is not None:
            raise ValueError(f"{name!r}: reference_weight without a reference_image")
        return None, DEFAULT_REFERENCE_WEIGHT
    reference = str(reference).strip()
    parts = PurePosixPath(reference.replace("\\", "/")).parts
    if PurePosixPath(reference).is_absolute() or Path(reference).is_absolute() or ".." in parts:
        raise ValueError(f"{name!r}: reference_image {reference!r} must be a path relative to the images folder "
                         "or the data directory, without '..'")
    try:
        weight = float(entry.get("reference_weight", DEFAULT_REFERENCE_WEIGHT))
    except (TypeError, ValueError):
        raise ValueError(f"{name!r}: reference_weight {entry.get('reference_weight')!r} is not a number") from None
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"{name!r}: reference_weight {weight:g} is outside 0..1")
    return reference, weight


def reference_image_path(segment: Segment, images_dir: Path, data_dir: Path) -> Path | None:
    """The segment's reference photo: under the images folder, else under the data directory; None when
    it names none. `FileNotFoundError` naming the segment when neither holds the file."""
    if segment.reference_image is None:
        return None
    for root in (images_dir, data_dir):
        if not isinstance(root, Path):  # an images folder on object storage: reference photos are local files
            continue
        path = root / segment.reference_image
        if path.is_file() and path.resolve().is_relative_to(root.resolve()):  # no escape through a symlink
            return path
    raise FileNotFoundError(f"segment {segment.key!r}: reference_image {segment.reference_image!r} is in neither "
                            f"{images_dir} nor {data_dir}")
