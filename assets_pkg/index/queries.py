"""Search queries beyond one text: an image, text and image fused, negative terms, label filters.

The one place a query vector is built, for every front end: `adrag search`, the campaigns' retrieval
(a segment's reference photo), the review studio. A query is one unit vector; a hit's score is the
cosine between it and the image's vector, so scores of every form are on the same scale.

- text:     t = encode_text(text)
- image:    i = encode_image(bytes), decoded and preprocessed exactly as catalog images are
            (`ClipEncoder.encode_images`: `decode_upright_rgb` + the model's preprocessing)
- both:     p = normalise((1 - w) * t + w * i), w = `image_weight` (0.5: halfway between the two)
- negative: q = normalise(p - b * n), n = normalise(sum of the negative texts' unit vectors),
            b = `negative_weight` (0..1, 0 ignores the negatives): embedding arithmetic, moving the
            query away from the unwanted concept's direction, so an image's score drops by b times
            its cosine with n (before renormalising) and images unlike n keep their rank.
- labels:   a `where` prefilter: only images carrying one of them (`labels_filter`).

In text, `-word` and `-"a phrase"` (after a space or at the start) are negative terms: "dog -leash".
A hyphen inside a word ("well-behaved") is not. Bad queries raise `BadQuery`, whose message is one
line a user can act on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from assets_pkg.catalog.scan import normalise_label
from assets_pkg.index.lance_index import labels_filter
from assets_pkg.pictures import UndecodableImage, decode_upright_rgb

if TYPE_CHECKING:
    from assets_pkg.embeddings.encode import EncodedBatch

DEFAULT_IMAGE_WEIGHT = 0.5
DEFAULT_NEGATIVE_WEIGHT = 0.5
NEGATIVE_TERM = re.compile(r'(?:^|(?<=\s))-(?:"([^"]*)"|([^\s"]+))')
MAX_QUERY_IMAGE_BYTES = 64 * 1024 * 1024


class BadQuery(ValueError):
    """A query that cannot be searched; the message says why, in one line."""


class QueryEncoder(Protocol):
    """What building a query needs of the model (`ClipEncoder`)."""

    def encode_texts(self, texts: list[str]) -> np.ndarray: ...

    def encode_images(self, items: Iterable[tuple[str, bytes]]) -> Iterable[EncodedBatch]: ...


@dataclass(frozen=True)
class QueryImage:
    data: bytes
    name: str  # for messages and descriptions: the path as given

    @classmethod
    def read(cls, path: str | Path, name: str | None = None) -> QueryImage:
        """The file's bytes; `BadQuery` when it is missing, not a file, unreadable or does not decode
        (checked here, so a front end can refuse it before loading a model)."""
        path = Path(path)
        name = name or str(path)
        if not path.exists():
            raise BadQuery(f"query image {name} does not exist")
        if not path.is_file():
            raise BadQuery(f"query image {name} is not a file")
        try:
            if path.stat().st_size > MAX_QUERY_IMAGE_BYTES:
                raise BadQuery(f"query image {name} is larger than {MAX_QUERY_IMAGE_BYTES // 2**20} MiB")
            image = cls(path.read_bytes(), name)
        except OSError as err:
            raise BadQuery(f"cannot read query image {name}: {err.strerror or err}") from None
        try:
            decode_upright_rgb(image.data, draft_size=(256, 256))
        except UndecodableImage as err:
            raise BadQuery(f"cannot decode query image {name}: {_decode_reason(str(err))}") from None
        return image


@dataclass(frozen=True)
class Query:
    """What to search for. `text` holds no negative terms (see `parse_text`): they are `negatives`."""

    text: str = ""
    image: QueryImage | None = None
    negatives: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    image_weight: float = DEFAULT_IMAGE_WEIGHT  # share of the image when text and image are both given
    negative_weight: float = DEFAULT_NEGATIVE_WEIGHT

    @classmethod
    def parse(cls, text: str = "", image: QueryImage | None = None, labels: Iterable[str] = (), **weights) -> Query:
        """A query from what a user typed: negative terms taken out of `text`, labels normalised as the
        catalog's are."""
        positive, negatives = parse_text(text)
        return cls(text=positive, image=image, negatives=negatives,
                   labels=tuple(dict.fromkeys(normalise_label(label) for label in labels if label.strip())), **weights)

    def check(self) -> None:
        """`BadQuery` when there is nothing to search for or a weight is out of range (no model needed)."""
        for name, weight in (("image weight", self.image_weight), ("negative weight", self.negative_weight)):
            if not 0.0 <= weight <= 1.0:
                raise BadQuery(f"{name} {weight:g} is outside 0..1")
        if not self.text and self.image is None:
            if self.negatives:
                raise BadQuery("nothing to search for: the query has only negative terms ("
                               + " ".join(f"-{n}" for n in self.negatives) + "); add words or an image")
            raise BadQuery("nothing to search for: give a text, an image or both")

    def describe(self) -> str:
        """One line saying what is searched, e.g. `"dog" 0.5 + image beach.jpg 0.5 - "leash" x0.5 | labels: dog`;
        a plain text query is its text."""
        if self.text and not (self.image or self.negatives or self.labels):
            return self.text
        w = self.image_weight if self.text and self.image else None
        parts = []
        if self.text:
            parts.append(f'"{self.text}"' + (f" {1 - w:g}" if w is not None else ""))
        if self.image:
            parts.append(f"image {self.image.name}" + (f" {w:g}" if w is not None else ""))
        described = " + ".join(parts)
        if self.negatives:
            described += " - " + ", ".join(f'"{n}"' for n in self.negatives) + f" x{self.negative_weight:g}"
        if self.labels:
            described += " | labels: " + ", ".join(self.labels)
        return described


@dataclass(frozen=True)
class QueryVector:
    query: Query
    vector: np.ndarray  # (dim,) float32, unit norm
    where: str | None  # the label prefilter

    @property
    def description(self) -> str:
        return self.query.describe()


def parse_text(text: str) -> tuple[str, tuple[str, ...]]:
    """(positive text, negative terms): `dog -leash -"red collar"` -> ("dog", ("leash", "red collar"))."""
    negatives = tuple(" ".join((quoted or bare).split())
                      for quoted, bare in NEGATIVE_TERM.findall(text))
    positive = " ".join(NEGATIVE_TERM.sub(" ", text).split())
    return positive, tuple(dict.fromkeys(n for n in negatives if n))


def build_query(query: Query, encoder: QueryEncoder) -> QueryVector:
    """The query's unit vector (see the module docstring) and its label filter; `BadQuery` when there
    is nothing to search for, a weight is out of range, or the image does not decode."""
    query.check()
    texts = ([query.text] if query.text else []) + list(query.negatives)
    encoded = encoder.encode_texts(texts) if texts else None
    parts = []
    if query.text:
        parts.append((1.0 - query.image_weight if query.image else 1.0, encoded[0]))
    if query.image is not None:
        parts.append((query.image_weight if query.text else 1.0, encode_query_image(encoder, query.image)))
    positive = _unit(sum(weight * vector for weight, vector in parts), "the text and image weights cancel out")
    vector = positive
    if query.negatives and query.negative_weight > 0:
        negative = _unit(encoded[len(texts) - len(query.negatives):].sum(axis=0), "the negative terms cancel out")
        vector = _unit(positive - query.negative_weight * negative, "the negative terms cancel the query")
    return QueryVector(query=query, vector=vector.astype(np.float32), where=labels_filter(list(query.labels)))


def encode_query_image(encoder: QueryEncoder, image: QueryImage) -> np.ndarray:
    """The image's unit vector, encoded exactly as the catalog's images are."""
    for batch in encoder.encode_images([("query", image.data)]):
        if batch.failed:
            reason = batch.failed[0][1].removeprefix("cannot decode for embedding: ").removeprefix("UndecodableImage: ")
            raise BadQuery(f"cannot decode query image {image.name}: {_decode_reason(reason)}")
        if len(batch.vectors):
            return np.asarray(batch.vectors[0], np.float32)
    raise BadQuery(f"cannot decode query image {image.name}")


def _decode_reason(reason: str) -> str:
    """Pillow's reason on one line, without the name of its in-memory file."""
    return " ".join(re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", "", reason).split())


def _unit(vector: np.ndarray, why_zero: str) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm < 1e-6:
        raise BadQuery(f"nothing to search for: {why_zero}")
    return vector / norm
