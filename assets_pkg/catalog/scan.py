"""Scan the source folder into a manifest: one row per image file, bad files set aside with reasons.

A file whose (size, mtime) match the previous manifest is not read again, so a scan of an
unchanged folder costs one `stat` per file.

Real folders hold more than images. What the scan does with the rest:
- A symlink is followed only when it resolves inside the source folder; one that points outside is
  quarantined without being read, so a link cannot pull files from elsewhere into the lake.
  Symlinked folders are not walked (no loops, no duplicates): one that points outside is
  quarantined, one inside is skipped because its files are scanned where they really are.
- FIFOs, sockets and devices are quarantined from their `lstat` alone: opening a FIFO blocks.
- A file that disappears while the scan runs is not listed (nor quarantined): the manifest says
  what the folder holds, and a quarantine row for a path that is gone would help nobody.
- Names are kept exactly (spaces, unicode, newlines, leading dashes). A name that is not valid
  UTF-8 cannot be stored in the tables: it is quarantined under an escaped form of itself.
- A folder the scan cannot list is quarantined instead of being skipped silently.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from assets_pkg.catalog.probe import InvalidImage, content_hash, probe_image
from assets_pkg.layout import MANIFEST_SCHEMA

SIDECAR_SUFFIX = ".labels"  # photo.jpg.labels: one label per line (or comma-separated)



@dataclass(frozen=True)
class Rejected:
    path: str
    reason: str
    image_id: str | None = None  # content hash where the bytes could be read


@dataclass
class ScanResult:
    manifest: pa.Table
    rejected: list[Rejected] = field(default_factory=list)
    probed: int = 0  # files actually read and decoded this scan
    reused: int = 0  # files whose previous row was still valid


class Unusable(Exception):
    """The entry is not a file the scan may read; the message is the quarantine reason."""


def normalise_label(text: str) -> str:
    return " ".join(text.strip().lower().replace("_", " ").replace("-", " ").split())


def labels_for(root: Path, file: Path, root_real: str | None = None) -> list[str]:
    """Labels from a `<file>.labels` sidecar when there is one, else the sub-folder name.

    A sidecar that exists but cannot be read raises `Unusable`: guessing the labels
    instead would put the photo into the wrong segments' ads. `root_real` saves resolving the
    root once per file.
    """
    # String operations, not pathlib: this runs for every file of every scan, and pathlib's
    # parsing was most of the time an unchanged 10,000-file folder took to scan.
    sidecar = os.fspath(file) + SIDECAR_SUFFIX
    try:
        checked = checked_stat(root_real or os.path.realpath(root), sidecar)
        text = read_checked(sidecar, checked).decode("utf-8", errors="replace")
    except FileNotFoundError:
        parent = os.path.dirname(os.fspath(file))
        return [] if parent == os.fspath(root) else [normalise_label(os.path.basename(parent))]
    except Unusable as err:
        raise Unusable(f"labels sidecar {os.path.basename(sidecar)}: {err}") from None
    except OSError as err:
        raise Unusable(f"labels sidecar {os.path.basename(sidecar)}: cannot read: {_read_error(err)}") from None
    return labels_from_text(text)


def labels_from_text(text: str) -> list[str]:
    """The labels a sidecar's text names: one per line or comma-separated, normalised, sorted, unique."""
    return sorted({lbl for lbl in map(normalise_label, text.replace(",", "\n").splitlines()) if lbl})


def is_inside(root_real: str, path: Path) -> bool:
    """Whether `path`, every symlink resolved, lies under the (already resolved) root."""
    real = os.path.realpath(path)
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


def iter_candidate_files(root: Path, on_error=None):
    """Every entry that may be an image, in a stable order: files of any type (FIFOs and sockets
    are judged later, not dropped here) and symlinked folders that point outside the root.
    Hidden entries and label sidecars are left out. `on_error(OSError)` hears of unlistable folders.
    """
    root_real = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error):
        linked = {d for d in dirnames if os.path.islink(os.path.join(dirpath, d))}
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in linked)
        outside = [d for d in linked if not is_inside(root_real, Path(dirpath) / d)]
        for name in sorted(filenames + outside):
            if name.startswith(".") or name.endswith(SIDECAR_SUFFIX):
                continue
            yield Path(os.path.join(dirpath, name))  # one parse, not two (see labels_for)


def checked_stat(root_real: str, path: Path | str) -> os.stat_result:
    """The stat of the regular file `path` names, following a symlink only when it stays inside.

    Raises `Unusable` for anything that must not be opened and `FileNotFoundError` when the entry
    itself is gone. Only `lstat`/`stat` are called: nothing is opened.
    """
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        if not is_inside(root_real, path):
            raise Unusable("symlink points outside the source folder; copy the file in instead")
        try:
            st = os.stat(path)
        except OSError as err:  # dangling target or a symlink loop
            raise Unusable(f"broken symlink ({err.strerror}); fix or remove the link") from None
    if not stat.S_ISREG(st.st_mode):
        raise Unusable(f"not a regular file ({_file_type(st.st_mode)}); only image files are read")
    return st


def read_checked(path: Path | str, checked: os.stat_result) -> bytes:
    """The bytes of the file `checked_stat` approved.

    Why O_NONBLOCK and the fstat: between the stat and the open the name can be swapped for a FIFO
    (whose open would block the scan) or another file; the bytes must be those of the file checked.
    A swapped file reads as vanished: the next scan sees it as it is then.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (checked.st_dev, checked.st_ino) or not stat.S_ISREG(now.st_mode):
            raise FileNotFoundError(errno.ENOENT, "replaced during scan", str(path))
        return f.read()


def scan_folder(root: Path, previous: pa.Table | None = None) -> ScanResult:
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a folder")
    root_real = os.path.realpath(root)
    known = {row["path"]: row for row in previous.to_pylist()} if previous is not None else {}
    rows: list[dict] = []
    result = ScanResult(manifest=MANIFEST_SCHEMA.empty_table())

    def folder_error(err: OSError) -> None:
        # An unlistable root would read as "every image deleted" downstream: fail the run instead.
        if not err.filename or os.path.realpath(err.filename) == root_real:
            raise err
        rel = _storable(Path(err.filename).relative_to(root).as_posix())
        result.rejected.append(Rejected(rel, f"cannot list folder: {_read_error(err)}"))

    prefix = os.path.join(os.fspath(root), "")
    for file in iter_candidate_files(root, on_error=folder_error):
        path = os.fspath(file)  # strings, not pathlib, for the same reason as in labels_for
        rel = path[len(prefix):] if path.startswith(prefix) else file.relative_to(root).as_posix()
        if os.sep != "/":
            rel = rel.replace(os.sep, "/")
        if (shown := _storable(rel)) != rel:
            result.rejected.append(Rejected(shown, "file name is not valid UTF-8; rename the file"))
            continue
        try:
            checked = checked_stat(root_real, file)
            labels = labels_for(root, file, root_real)
            old = known.get(rel)
            if old and old["size_bytes"] == checked.st_size and old["mtime_ns"] == checked.st_mtime_ns:
                rows.append({**old, "labels": labels})
                result.reused += 1
                continue
            data = read_checked(file, checked)
        except FileNotFoundError:
            continue  # vanished while the scan ran: not listed (see the module docstring)
        except Unusable as err:
            result.rejected.append(Rejected(rel, str(err)))
            continue
        except OSError as err:
            result.rejected.append(Rejected(rel, f"cannot read: {_read_error(err)}"))
            continue
        result.probed += 1
        try:
            facts = probe_image(data)
        except InvalidImage as err:
            result.rejected.append(Rejected(rel, str(err), content_hash(data)))
            continue
        rows.append({
            "path": rel, "image_id": facts.image_id, "size_bytes": facts.size_bytes,
            "mtime_ns": checked.st_mtime_ns, "format": facts.format, "width": facts.width,
            "height": facts.height, "labels": labels,
        })
    result.manifest = pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
    return result


def _storable(rel: str) -> str:
    """`rel` itself when it is valid UTF-8, else a readable escaped form (undecodable bytes as \\xNN)."""
    try:
        rel.encode("utf-8")
        return rel
    except UnicodeEncodeError:
        return os.fsencode(rel).decode("utf-8", errors="backslashreplace")


def _file_type(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "named pipe"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "folder" if stat.S_ISDIR(mode) else "special file"


def _read_error(err: OSError) -> str:
    if isinstance(err, PermissionError):
        return "permission denied; make it readable by the user the pipeline runs as"
    return (err.strerror or str(err)).lower()
