"""Which images an answer cites, checked against the ones the model was shown.

The model is asked to cite each image by its path in square brackets. A citation counts as verified only
when it names an image that was retrieved and sent (any of its paths; also written with a leading folder,
as `images/dog/a.jpg` or an absolute path, when that picks exactly one sent image). Anything else that
looks like an image path, in brackets or bare, is reported as unverified: cited, never shown to the model.
Bracketed text that is not path-like (`[1]`, `[citation needed]`, a markdown link's label) is no citation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

IMAGE_SUFFIX = r"(?:jpe?g|png|webp|gif|bmp|tiff?|heic|heif|avif)"
BRACKETED = re.compile(r"\[([^\[\]\n]{1,512})\]")
BARE_IMAGE_PATH = re.compile(rf"(?<![\w./\\-])((?:[/\\]|[A-Za-z]:[/\\])?(?:[\w.-]+[/\\])*[\w.-]+\.{IMAGE_SUFFIX})"
                             rf"(?![\w/\\-])", re.IGNORECASE)
PATH_LIKE = re.compile(rf"[/\\]|\.{IMAGE_SUFFIX}$", re.IGNORECASE)
MAX_CITATIONS = 100  # kept per answer; a runaway answer's citation list stays bounded


@dataclass(frozen=True)
class Citations:
    verified: tuple[str, ...]  # retrieved images' paths (as retrieved), in order of first citation
    unverified: tuple[str, ...]  # cited as written, not among the images shown


def check_citations(answer: str, shown: Iterable[tuple[str, Iterable[str]]]) -> Citations:
    """`shown`: (path, all its paths) for each image the model was given."""
    aliases = {alias.strip(): path for path, paths in shown for alias in {path, *paths}}
    verified: dict[str, None] = {}
    unverified: dict[str, None] = {}
    for candidates in citation_candidates(answer):
        whole = _match(candidates[0], aliases)  # a shown path that itself holds a comma is one citation
        for cited in [candidates[0]] if whole is not None else candidates[1:] or candidates:
            found = _match(cited, aliases)
            if found is not None:
                verified.setdefault(found)
            elif PATH_LIKE.search(cited):
                unverified.setdefault(cited)
    return Citations(tuple(verified)[:MAX_CITATIONS], tuple(unverified)[:MAX_CITATIONS])


def citation_candidates(answer: str) -> list[list[str]]:
    """In order of appearance: for each bracketed text, [the whole text, then its comma- or semicolon-
    separated parts if it has several]; for each bare image file name outside brackets, [the name]."""
    found: list[tuple[int, list[str]]] = []
    covered = []
    for match in BRACKETED.finditer(answer):
        covered.append(match.span())
        inner = _clean(match.group(1))
        parts = [_clean(p) for p in re.split(r"[,;]", inner)]
        found.append((match.start(), [inner, *(parts if len(parts) > 1 else [])]))
    for match in BARE_IMAGE_PATH.finditer(answer):
        if not any(start <= match.start() < end for start, end in covered):
            found.append((match.start(), [match.group(1)]))
    return [texts for _, texts in sorted(found, key=lambda f: f[0])]


def _clean(text: str) -> str:
    return text.strip().strip("`'\"").strip()


def _match(cited: str, aliases: dict[str, str]) -> str | None:
    if cited in aliases:
        return aliases[cited]
    normal = cited.replace("\\", "/")
    suffixed = {path for alias, path in aliases.items() if normal.endswith("/" + alias.replace("\\", "/"))}
    return suffixed.pop() if len(suffixed) == 1 else None
