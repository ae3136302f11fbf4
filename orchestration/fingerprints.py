"""Fingerprints the sensors keep in their cursors to notice change cheaply.

- The image folder's fingerprint is a digest of its listing: every entry's relative path, type,
  size and mtime (nanoseconds), label sidecars included, hidden entries left out as the catalog
  scan leaves them out. Only `scandir` and `stat` are called: no file is opened or read, so an
  unchanged folder of a million files costs a million stats and nothing else. A folder on object
  storage is fingerprinted by its listing's keys, sizes and ETags.
- A segment's fingerprint is a digest of what its ad is made from in the segments file: its name,
  description, subject and labels, and the file's brand block (which every ad's prompt carries).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import asdict, dataclass

from assets_pkg.campaigns.segments import Brand, Segment
from assets_pkg.catalog.object_source import listing_fingerprint
from assets_pkg.storage import Location, ObjectLocation


@dataclass(frozen=True)
class FolderFingerprint:
    digest: str  # sha256 hex of the listing
    entries: int  # files (and other non-folder entries) listed


def folder_fingerprint(root: Location) -> FolderFingerprint:
    """The digest of the folder's listing under `root` (which must be a folder), or of a bucket
    prefix's listing (keys, sizes, ETags: list requests only) when the folder is on object storage."""
    if isinstance(root, ObjectLocation):
        digest, entries = listing_fingerprint(root)
        return FolderFingerprint(digest=digest, entries=entries)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a folder")
    digest = hashlib.sha256()
    entries = 0
    for line in _listing(str(root), ""):
        digest.update(line)
        if line[:2] in (b"f ", b"o "):
            entries += 1
    return FolderFingerprint(digest=digest.hexdigest(), entries=entries)


def _listing(directory: str, prefix: str):
    """Lines `<type> <relpath>\\0<size>\\0<mtime_ns>\\n` in sorted order, folders walked depth first.

    Symlinked folders are listed (by their target's stat) but not walked, as the scan does; an
    unlistable folder is a line of its own, so it becoming listable is a change.
    """
    try:
        with os.scandir(directory) as it:
            items = sorted(it, key=lambda e: e.name)
    except OSError as err:
        yield f"! {prefix}\0{err.errno}\n".encode("utf-8", "surrogateescape")
        return
    for entry in items:
        if entry.name.startswith("."):
            continue
        rel = prefix + entry.name
        if entry.is_dir(follow_symlinks=False):
            yield f"d {rel}\n".encode("utf-8", "surrogateescape")
            yield from _listing(entry.path, rel + "/")
            continue
        try:
            st = entry.stat(follow_symlinks=True)
        except OSError:  # a broken symlink, or the file vanished since the listing
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
        kind = "f" if stat.S_ISREG(st.st_mode) else "o"
        yield f"{kind} {rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape")


def segment_fingerprint(segment: Segment, brand: Brand) -> str:
    """sha256 hex (first 16 chars) of what the segment's candidates and ad are made from."""
    payload = json.dumps({"segment": asdict(segment), "brand": asdict(brand)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
