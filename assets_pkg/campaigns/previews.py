"""Pictures small enough to travel inside Dagster metadata, so the UI shows them on the materialization.

Dagster renders markdown metadata, images included, but it stores every metadata value in its
event log: a full-size PNG there would bloat the instance database. A JPEG thumbnail of a few tens
of kilobytes, inlined as a data URI, shows the picture and keeps the log small; the full-size file
stays on disk (and in MLflow), linked next to it.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from assets_pkg.pictures import decode_upright_rgb

PREVIEW_MAX_SIDE = 640
PREVIEW_QUALITY = 80


def preview_jpeg(image: bytes, max_side: int = PREVIEW_MAX_SIDE) -> bytes:
    # JPEG has no alpha: the decode lays transparent areas on white, as a browser shows them.
    picture = decode_upright_rgb(image)
    picture.thumbnail((max_side, max_side))
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=PREVIEW_QUALITY, optimize=True)
    return out.getvalue()


def markdown_picture(path: Path, alt: str, max_side: int = PREVIEW_MAX_SIDE) -> str:
    """Markdown that shows a thumbnail of the image at `path` (inlined) and names the full-size file."""
    data = base64.b64encode(preview_jpeg(path.read_bytes(), max_side)).decode("ascii")
    safe_alt = alt.replace("]", ")").replace("[", "(").replace("\n", " ")
    return f"![{safe_alt}](data:image/jpeg;base64,{data})\n\nFull size: `{path}`"
