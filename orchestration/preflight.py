"""What `adrag run` and `adrag demo` check before a Dagster run starts.

A user's mistake (a folder that is not there, weights that cannot be had, a broken segments file, an
unknown segment key, no brand image) is one line and an exit status here, in seconds, instead of a
failed run with Dagster's stack traces minutes later. The runs check the same things again
themselves (a sensor or the UI starts them without this), with the same messages.
"""

from __future__ import annotations

import os
from pathlib import Path

from assets_pkg.campaigns.operations import MissingBrandImage, read_brand_image
from assets_pkg.campaigns.segments import SegmentsFile, load_segments
from assets_pkg.embeddings.model import ClipSpec, WeightsUnavailable, check_weights
from assets_pkg.layout import DataLayout

USAGE = 2  # a bad argument, as argparse exits
UNUSABLE = 1  # the arguments are fine; a file or the model is not


class CannotRun(Exception):
    """Why the command cannot start, in one line, and its exit status."""

    def __init__(self, message: str, exit_code: int = UNUSABLE):
        super().__init__(" ".join(message.split()))
        self.exit_code = exit_code


def check_images_folder(images_dir: Path) -> None:
    how = ("point at your photos with --images DIR (or ADRAG_IMAGES_DIR), or make a demo catalog with "
           "`adrag --offline demo`")
    if not images_dir.exists():
        raise CannotRun(f"image folder {images_dir} does not exist: {how}")
    if not images_dir.is_dir():
        raise CannotRun(f"image folder {images_dir} is not a folder: {how}")
    try:
        with os.scandir(images_dir) as entries:
            next(entries, None)
    except OSError as err:
        raise CannotRun(f"image folder {images_dir} cannot be read: {err.strerror or err}") from None


def check_clip_weights(spec: ClipSpec) -> None:
    try:
        check_weights(spec)
    except (WeightsUnavailable, ValueError) as err:
        raise CannotRun(str(err)) from None


def check_segments(segments_file: Path, wanted: list[str] | None) -> SegmentsFile | None:
    """The segments file (None when there is none and no key was asked for); every key in `wanted` must be in it."""
    if not segments_file.is_file():
        if wanted:
            raise CannotRun(f"--segments {' '.join(wanted)}: there is no segments file at {segments_file}", USAGE)
        return None
    try:
        segments = load_segments(segments_file)
    except ValueError as err:
        raise CannotRun(f"{err}; nothing was run, the segment partitions are as they were") from None
    known = [s.key for s in segments.segments]
    if unknown := [key for key in wanted or [] if key not in known]:
        unusable = f" (and entries it cannot use: {'; '.join(segments.errors)})" if segments.errors else ""
        raise CannotRun(f"unknown segment key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} in --segments; "
                        f"{segments_file} has: {', '.join(known) or 'none'}{unusable}", USAGE)
    return segments


def check_brand_image(layout: DataLayout) -> None:
    try:
        read_brand_image(layout)
    except MissingBrandImage as err:
        raise CannotRun(str(err)) from None
