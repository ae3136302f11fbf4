"""A corpus of the files real image folders hold besides clean photos, made on the fly in tmp dirs.

Each kind is a small function that writes its case into a source folder and returns what the
pipeline must do with it:
- `ingested(path, format, (width, height), *checks)`: in the mirror with those facts, embedded and
  indexed; each check looks at the decoded image or the vectors (see `Observed`);
- `quarantined(path, reason)`: a catalog-stage quarantine row for `path` whose reason contains
  `reason`;
- `not_listed(path, why)`: in no table at all (a file that vanished while the run went on).

Decisions the corpus documents:
- a folder named like an image (`photo.jpg/`) is a folder: it is walked and its images ingested,
  labelled with its name;
- a symlink is followed when it resolves inside the source folder and quarantined when it points
  outside; a dangling or looping link is quarantined as broken;
- a file that vanishes after the scan listed it is not quarantined: the mirror skips it in that run
  and the next scan no longer lists it;
- an unreadable file is judged by a scan run as an unprivileged user (`unprivileged=True`): the
  test suite runs as root in CI, where permission bits do not stop reads.
"""

from __future__ import annotations

import io
import os
import socket
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from conftest import photo_bytes
from PIL import Image

RED, BLUE, WHITE = (230, 40, 30), (20, 60, 220), (255, 255, 255)


# Expectations ---------------------------------------------------------------------------------

@dataclass
class Observed:
    """What a check gets for an ingested case."""
    row: dict                        # the mirror row (metadata columns)
    image: Image.Image               # the mirrored bytes through the embedding stage's decoder
    vector: np.ndarray               # its embedding
    vector_at: Callable[[str], np.ndarray]  # the embedding of another path in the corpus


Check = Callable[[Observed], "str | None"]  # a failure message, or None when fine


@dataclass(frozen=True)
class Expected:
    path: str  # as the tables store it: relative to the source folder, POSIX separators
    outcome: str  # "ingested" | "quarantined" | "not listed"
    reason: str = ""  # quarantined: a substring of the reason; not listed: why
    hashed: bool = False  # quarantined: the row carries the content hash (the bytes were read)
    format: str | None = None
    size: tuple[int, int] | None = None  # as displayed
    checks: tuple[Check, ...] = ()

    def describe(self) -> str:
        if self.outcome == "ingested":
            return f"ingested {self.format} {self.size[0]}x{self.size[1]}" + (f" +{len(self.checks)} checks" if self.checks else "")
        return f"{self.outcome}: {self.reason}"


def ingested(path: str, fmt: str, size: tuple[int, int], *checks: Check) -> Expected:
    return Expected(path, "ingested", format=fmt, size=size, checks=checks)


def quarantined(path: str, reason: str, hashed: bool = True) -> Expected:
    """`hashed=False` where the scan must not (or cannot) read the bytes."""
    return Expected(path, "quarantined", reason=reason, hashed=hashed)


def not_listed(path: str, why: str) -> Expected:
    return Expected(path, "not listed", reason=why)


def pixel(xy: tuple[int, int], rgb: tuple[int, int, int], tolerance: int = 12) -> Check:
    def check(seen: Observed) -> str | None:
        got = seen.image.getpixel(xy)
        if max(abs(a - b) for a, b in zip(got, rgb)) > tolerance:
            return f"pixel {xy} decoded as {got}, expected about {rgb}"
        return None
    return check


def same_embedding_as(path: str, min_cosine: float = 0.999) -> Check:
    def check(seen: Observed) -> str | None:
        cosine = float(seen.vector @ seen.vector_at(path))
        return None if cosine > min_cosine else f"cosine with {path!r} is {cosine:.5f} <= {min_cosine}"
    return check


# The registry -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Kind:
    name: str
    write: Callable[[Path], "Expected | None"]  # None: this machine cannot make the case
    unprivileged: bool = False  # judged by a scan as an unprivileged user
    vanishes: bool = False      # the test deletes it after the manifest, before the mirror


KINDS: list[Kind] = []


def kind(name: str, **flags) -> Callable:
    def register(write: Callable[[Path], Expected | None]) -> Callable:
        KINDS.append(Kind(name, write, **flags))
        return write
    return register


# Making bytes -----------------------------------------------------------------------------------

def encode(img: Image.Image, fmt: str, **save) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **save)
    return out.getvalue()


def halves(size: tuple[int, int], top, bottom, mode: str = "RGB") -> Image.Image:
    """An image whose top half is one colour and bottom half another: orientation is visible."""
    img = Image.new(mode, size, top)
    img.paste(bottom, (0, size[1] // 2, size[0], size[1]))
    return img


def png_chunk(kind_: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind_ + data + struct.pack(">I", zlib.crc32(kind_ + data))


def handmade_png(width: int, height: int, bit_depth: int, colour_type: int, rows: int | None = None) -> bytes:
    """A PNG written chunk by chunk with valid CRCs; `rows` of zero pixels (all when None)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    row = b"\0" * (1 + (width * bit_depth + 7) // 8)  # filter byte + packed pixels
    plte = png_chunk(b"PLTE", bytes([0, 0, 0, 255, 255, 255])) if colour_type == 3 else b""
    idat = zlib.compress(row * (height if rows is None else rows), 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + plte + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


# Quarantined: not images, broken images, dangerous images ---------------------------------------

@kind("zero-byte file")
def zero_byte(folder: Path) -> Expected:
    (folder / "empty.jpg").write_bytes(b"")
    return quarantined("empty.jpg", "empty file")


@kind("truncated JPEG")
def truncated_jpeg(folder: Path) -> Expected:
    data = photo_bytes(101)
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    return quarantined("truncated.jpg", "cannot decode JPEG: image file is truncated")


@kind("truncated PNG")
def truncated_png(folder: Path) -> Expected:
    data = photo_bytes(102, fmt="PNG")
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    return quarantined("truncated.png", "cannot decode PNG")


@kind("PNG with garbled pixel data")
def garbled_png(folder: Path) -> Expected:
    data = bytearray(photo_bytes(103, fmt="PNG"))
    start = data.index(b"IDAT") + 14  # keep the zlib header, garble the deflate stream
    data[start:start + 400] = bytes(b ^ 0x5A for b in data[start:start + 400])
    (folder / "garbled.png").write_bytes(bytes(data))
    return quarantined("garbled.png", "cannot decode PNG")


@kind("random bytes named .jpg")
def random_bytes(folder: Path) -> Expected:
    (folder / "noise.jpg").write_bytes(np.random.default_rng(0).bytes(4096))
    return quarantined("noise.jpg", "not a recognised image file")


@kind("HTML page named .png")
def html_as_png(folder: Path) -> Expected:
    (folder / "page.png").write_text("<!doctype html><html><body>404 Not Found</body></html>\n")
    return quarantined("page.png", "not a recognised image file")


@kind("decompression bomb: 1-bit palette PNG 20000x20000, ~50 KB")
def bomb(folder: Path) -> Expected:
    (folder / "bomb.png").write_bytes(handmade_png(20_000, 20_000, 1, 3))
    return quarantined("bomb.png", "too many pixels")


@kind("1-bit PNG 9000x8000 (72 Mpx): over our limit, under Pillow's")
def over_our_limit(folder: Path) -> Expected:
    (folder / "large.png").write_bytes(handmade_png(9000, 8000, 1, 0))
    return quarantined("large.png", "too many pixels (9000x8000")


@kind("PNG IHDR hand-edited to claim 100000x100000 (valid CRC)")
def huge_png_header(folder: Path) -> Expected:
    (folder / "huge-header.png").write_bytes(handmade_png(100_000, 100_000, 8, 0, rows=1))
    return quarantined("huge-header.png", "too many pixels")


@kind("JPEG SOF hand-edited to claim 65000x65000")
def huge_jpeg_header(folder: Path) -> Expected:
    data = photo_bytes(104)
    sof = data.index(b"\xff\xc0")  # marker, length (2), precision (1), height (2), width (2)
    edited = data[: sof + 5] + struct.pack(">HH", 65_000, 65_000) + data[sof + 9:]
    (folder / "huge-header.jpg").write_bytes(edited)
    return quarantined("huge-header.jpg", "too many pixels")


@kind("unsupported format: BMP")
def bmp(folder: Path) -> Expected:
    (folder / "scan.bmp").write_bytes(encode(Image.new("RGB", (16, 16), RED), "BMP"))
    return quarantined("scan.bmp", "unsupported format BMP")


@kind("unsupported format: TIFF")
def tiff(folder: Path) -> Expected:
    (folder / "scan.tiff").write_bytes(encode(Image.new("RGB", (16, 16), RED), "TIFF"))
    return quarantined("scan.tiff", "unsupported format TIFF")


@kind("unsupported format: HEIC from a phone (header only)")
def heic(folder: Path) -> Expected:
    (folder / "IMG_0001.HEIC").write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(64))
    return quarantined("IMG_0001.HEIC", "unsupported format HEIC")


@kind("symlink to a file outside the source folder")
def symlink_outside(folder: Path) -> Expected:
    outside = folder.parent / "outside-the-source"
    outside.mkdir(exist_ok=True)
    (outside / "secret.jpg").write_bytes(photo_bytes(105))
    (folder / "outside-link.jpg").symlink_to(outside / "secret.jpg")
    return quarantined("outside-link.jpg", "symlink points outside the source folder", hashed=False)


@kind("symlinked folder pointing outside the source folder")
def symlinked_folder_outside(folder: Path) -> Expected:
    outside = folder.parent / "outside-folder"
    outside.mkdir(exist_ok=True)
    (outside / "elsewhere.jpg").write_bytes(photo_bytes(106))
    (folder / "linked-folder").symlink_to(outside, target_is_directory=True)
    return quarantined("linked-folder", "symlink points outside the source folder", hashed=False)


@kind("dangling symlink")
def dangling_symlink(folder: Path) -> Expected:
    (folder / "dangling.jpg").symlink_to(folder / "no-such-file.jpg")
    return quarantined("dangling.jpg", "broken symlink", hashed=False)


@kind("symlink loop")
def symlink_loop(folder: Path) -> Expected:
    (folder / "loop.jpg").symlink_to("loop.jpg")
    return quarantined("loop.jpg", "broken symlink", hashed=False)


@kind("named pipe (FIFO) named .jpg")
def fifo(folder: Path) -> Expected:
    os.mkfifo(folder / "pipe.jpg")
    return quarantined("pipe.jpg", "not a regular file (named pipe)", hashed=False)


@kind("unix socket named .png")
def unix_socket(folder: Path) -> Expected:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(folder / "socket.png"))
    return quarantined("socket.png", "not a regular file (socket)", hashed=False)


@kind("character device named .jpg")
def device(folder: Path) -> Expected | None:
    try:
        os.mknod(folder / "device.jpg", stat.S_IFCHR | 0o600, os.makedev(1, 3))  # like /dev/null
    except (PermissionError, OSError):
        return None  # needs CAP_MKNOD
    return quarantined("device.jpg", "not a regular file (device)", hashed=False)


@kind("labels sidecar that is a named pipe")
def fifo_sidecar(folder: Path) -> Expected:
    (folder / "sidecar-pipe.jpg").write_bytes(photo_bytes(107))
    os.mkfifo(folder / "sidecar-pipe.jpg.labels")
    return quarantined("sidecar-pipe.jpg", "labels sidecar sidecar-pipe.jpg.labels: not a regular file", hashed=False)


@kind("file name that is not valid UTF-8")
def latin1_name(folder: Path) -> Expected:
    Path(os.fsdecode(os.fsencode(folder) + b"/caf\xe9.jpg")).write_bytes(photo_bytes(108))  # Latin-1 "café"
    return quarantined("caf\\xe9.jpg", "file name is not valid UTF-8", hashed=False)


@kind("file unreadable to the pipeline's user", unprivileged=True)
def unreadable_file(folder: Path) -> Expected:
    (folder / "locked.jpg").write_bytes(photo_bytes(109))
    (folder / "locked.jpg").chmod(0)
    return quarantined("locked.jpg", "cannot read: permission denied", hashed=False)


@kind("folder unreadable to the pipeline's user", unprivileged=True)
def unreadable_folder(folder: Path) -> Expected:
    (folder / "locked-folder").mkdir()
    (folder / "locked-folder" / "inside.jpg").write_bytes(photo_bytes(110))
    (folder / "locked-folder").chmod(0)
    return quarantined("locked-folder", "cannot list folder: permission denied", hashed=False)


@kind("labels sidecar unreadable to the pipeline's user", unprivileged=True)
def unreadable_sidecar(folder: Path) -> Expected:
    (folder / "labelled.jpg").write_bytes(photo_bytes(112))
    (folder / "labelled.jpg.labels").write_text("dog\n")
    (folder / "labelled.jpg.labels").chmod(0)
    return quarantined("labelled.jpg", "labels sidecar labelled.jpg.labels: cannot read: permission denied", hashed=False)


@kind("file deleted after the scan, before the mirror reads it", vanishes=True)
def vanishing(folder: Path) -> Expected:
    (folder / "vanishing.jpg").write_bytes(photo_bytes(111))
    return not_listed("vanishing.jpg", "vanished after the scan: skipped by the mirror, gone from the next scan")


# Ingested: valid but awkward files and names ----------------------------------------------------

@kind("folder named like an image (photo.jpg/)")
def folder_named_like_image(folder: Path) -> Expected:
    (folder / "photo.jpg").mkdir()
    (folder / "photo.jpg" / "inside.png").write_bytes(photo_bytes(120, fmt="PNG"))
    return ingested("photo.jpg/inside.png", "PNG", (96, 72))


@kind("symlink to a file inside the source folder")
def symlink_inside(folder: Path) -> Expected:
    (folder / "link-target.jpg").write_bytes(photo_bytes(121))
    (folder / "inside-link.jpg").symlink_to("link-target.jpg")
    return ingested("inside-link.jpg", "JPEG", (96, 72))


@kind("name with spaces and parentheses")
def name_spaces(folder: Path) -> Expected:
    (folder / "my photo (1).jpg").write_bytes(photo_bytes(122))
    return ingested("my photo (1).jpg", "JPEG", (96, 72))


@kind("unicode name (NFC and NFD accents, emoji, CJK)")
def name_unicode(folder: Path) -> Expected:
    name = "caf\u00e9 cafe\u0301 \u2615 \u732b.png"
    (folder / name).write_bytes(photo_bytes(123, fmt="PNG"))
    return ingested(name, "PNG", (96, 72))


@kind("name with a newline")
def name_newline(folder: Path) -> Expected:
    (folder / "two\nlines.jpg").write_bytes(photo_bytes(124))
    return ingested("two\nlines.jpg", "JPEG", (96, 72))


@kind("name with leading dashes")
def name_dashes(folder: Path) -> Expected:
    (folder / "--rf -x.jpg").write_bytes(photo_bytes(125))
    return ingested("--rf -x.jpg", "JPEG", (96, 72))


@kind("PNG bytes named .jpg")
def png_named_jpg(folder: Path) -> Expected:
    (folder / "really-a-png.jpg").write_bytes(photo_bytes(126, fmt="PNG"))
    return ingested("really-a-png.jpg", "PNG", (96, 72))


@kind("CMYK JPEG")
def cmyk_jpeg(folder: Path) -> Expected:
    img = halves((64, 48), RED, BLUE).convert("CMYK")
    (folder / "cmyk.jpg").write_bytes(encode(img, "JPEG", quality=95))
    return ingested("cmyk.jpg", "JPEG", (64, 48), pixel((32, 8), RED), pixel((32, 40), BLUE))


@kind("16-bit greyscale PNG (mode I;16)")
def png_16bit(folder: Path) -> Expected:
    levels = np.full((48, 64), 16_384, np.uint16)
    levels[24:] = 49_152
    (folder / "16bit.png").write_bytes(encode(Image.fromarray(levels), "PNG"))
    return ingested("16bit.png", "PNG", (64, 48), pixel((32, 8), (64, 64, 64), 1), pixel((32, 40), (192, 192, 192), 1))


@kind("palette PNG with a transparent entry")
def palette_transparent(folder: Path) -> Expected:
    img = Image.new("P", (64, 48), 0)
    img.putpalette([0, 0, 0, *RED])
    img.paste(1, (0, 24, 64, 48))
    (folder / "palette-alpha.png").write_bytes(encode(img, "PNG", transparency=0))
    return ingested("palette-alpha.png", "PNG", (64, 48), pixel((32, 8), WHITE, 0), pixel((32, 40), RED, 0))


@kind("RGBA PNG with transparent areas")
def rgba(folder: Path) -> Expected:
    img = halves((64, 48), (0, 0, 0, 0), (*BLUE, 255), mode="RGBA")
    (folder / "rgba.png").write_bytes(encode(img, "PNG"))
    return ingested("rgba.png", "PNG", (64, 48), pixel((32, 8), WHITE, 0), pixel((32, 40), BLUE, 0))


@kind("greyscale JPEG (mode L)")
def greyscale(folder: Path) -> Expected:
    (folder / "grey.jpg").write_bytes(encode(halves((64, 48), 40, 200, mode="L"), "JPEG", quality=95))
    return ingested("grey.jpg", "JPEG", (64, 48), pixel((32, 8), (40, 40, 40), 4), pixel((32, 40), (200, 200, 200), 4))


@kind("greyscale with alpha PNG (mode LA)")
def grey_alpha(folder: Path) -> Expected:
    (folder / "grey-alpha.png").write_bytes(encode(halves((64, 48), (0, 0), (60, 255), mode="LA"), "PNG"))
    return ingested("grey-alpha.png", "PNG", (64, 48), pixel((32, 8), WHITE, 0), pixel((32, 40), (60, 60, 60), 0))


@kind("animated GIF (first frame is embedded)")
def animated_gif(folder: Path) -> Expected:
    frames = [Image.new("RGB", (40, 30), c) for c in (RED, BLUE, WHITE)]
    (folder / "animated.gif").write_bytes(encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100))
    return ingested("animated.gif", "GIF", (40, 30), pixel((20, 15), RED, 8))


@kind("animated WebP (first frame is embedded)")
def animated_webp(folder: Path) -> Expected:
    frames = [Image.new("RGB", (40, 30), c) for c in (RED, BLUE, WHITE)]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    (folder / "animated.webp").write_bytes(data)
    return ingested("animated.webp", "WEBP", (40, 30), pixel((20, 15), RED, 2))


def _upright() -> Image.Image:
    """Red over blue with a white stripe down the left: any rotation or mirroring shows."""
    img = halves((64, 96), RED, BLUE)
    img.paste(WHITE, (0, 0, 8, 96))
    return img


@kind("EXIF orientation 6 JPEG (stored sideways)")
def exif_rotated(folder: Path) -> Expected:
    stored = _upright().transpose(Image.Transpose.ROTATE_90)  # what a phone held upright stores
    exif = stored.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    (folder / "exif-rotated.jpg").write_bytes(encode(stored, "JPEG", exif=exif, quality=95, subsampling=0))
    return ingested("exif-rotated.jpg", "JPEG", (64, 96), pixel((40, 10), RED, 20), pixel((40, 86), BLUE, 20),
                    pixel((2, 48), WHITE, 20), same_embedding_as("exif-upright.png"))


@kind("the same photo stored upright (reference for the EXIF case)")
def exif_reference(folder: Path) -> Expected:
    (folder / "exif-upright.png").write_bytes(encode(_upright(), "PNG"))
    return ingested("exif-upright.png", "PNG", (64, 96))


@kind("1x1 image")
def one_pixel(folder: Path) -> Expected:
    (folder / "dot.png").write_bytes(encode(Image.new("RGB", (1, 1), BLUE), "PNG"))
    return ingested("dot.png", "PNG", (1, 1), pixel((0, 0), BLUE, 0))


@kind("very wide panorama 8000x40")
def panorama(folder: Path) -> Expected:
    (folder / "panorama.jpg").write_bytes(encode(halves((8000, 40), RED, BLUE), "JPEG"))
    return ingested("panorama.jpg", "JPEG", (8000, 40), pixel((4000, 5), RED, 20))


@kind("camera JPEG with an MPF second image (Pillow: MPO)")
def mpo(folder: Path) -> Expected:
    main, preview = halves((64, 48), RED, BLUE), Image.new("RGB", (32, 24), WHITE)
    (folder / "camera.jpg").write_bytes(encode(main, "MPO", save_all=True, append_images=[preview], quality=95))
    return ingested("camera.jpg", "JPEG", (64, 48), pixel((32, 8), RED, 12))
