"""The retrieved images as the model sees them: each downscaled to at most IMAGE_MAX_SIDE pixels and
sent as a JPEG data URL, so a request over the largest k stays around a megabyte whatever the photos'
size. Decoded the one way every stage decodes (`pictures.decode_upright_rgb`): upright, transparency on
white, so the model sees what CLIP embedded and what a reviewer sees."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from assets_pkg.index.lance_index import Hit
from assets_pkg.pictures import UndecodableImage, decode_upright_rgb

IMAGE_MAX_SIDE = 768  # about what OpenAI's and Qwen-VL's tiling read well; ~50-100 KB as JPEG
JPEG_QUALITY = 85


@dataclass(frozen=True)
class Evidence:
    """One retrieved image as sent: its rank and score from the index, and the data URL."""
    rank: int
    image_id: str
    path: str
    paths: tuple[str, ...]  # every path with these bytes: a citation of any of them is this image
    labels: tuple[str, ...]
    score: float
    width: int
    height: int
    data_url: str = field(repr=False)

    @property
    def sent_bytes(self) -> int:
        return len(self.data_url)

    def describe(self) -> dict:
        """What MLflow and the trace keep of it (no pixels)."""
        return {"rank": self.rank, "path": self.path, "paths": list(self.paths), "image_id": self.image_id,
                "labels": list(self.labels), "score": round(self.score, 6), "sent_width": self.width,
                "sent_height": self.height, "sent_bytes": self.sent_bytes}


def image_data_url(data: bytes, max_side: int = IMAGE_MAX_SIDE) -> tuple[str, int, int]:
    """A JPEG data URL of the image, no side over `max_side`, and its width and height."""
    picture = decode_upright_rgb(data, draft_size=(max_side, max_side))
    picture.thumbnail((max_side, max_side))
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=JPEG_QUALITY)
    return f"data:image/jpeg;base64,{base64.b64encode(out.getvalue()).decode('ascii')}", *picture.size


def gather_evidence(hits: list[Hit], image_bytes: Callable[[list[str]], Mapping[str, bytes]],
                    max_side: int = IMAGE_MAX_SIDE) -> tuple[list[Evidence], list[tuple[Hit, str]]]:
    """The hits' images ready to send, and the hits left out with the reason (their bytes gone from the
    store since the index was synced, or undecodable)."""
    stored = image_bytes([hit.image_id for hit in hits])
    sent, left_out = [], []
    for rank, hit in enumerate(hits, start=1):
        data = stored.get(hit.image_id)
        if data is None:
            left_out.append((hit, "its bytes are no longer stored"))
            continue
        try:
            url, width, height = image_data_url(data, max_side)
        except UndecodableImage as err:
            left_out.append((hit, f"undecodable: {err}"))
            continue
        sent.append(Evidence(rank=rank, image_id=hit.image_id, path=hit.path, paths=tuple(hit.paths or [hit.path]),
                             labels=tuple(hit.labels), score=hit.score, width=width, height=height, data_url=url))
    return sent, left_out
