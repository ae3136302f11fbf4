"""Catalog domain code: image validation, folder scan, labels, the mirror's storage properties."""

from __future__ import annotations

import io
import pyarrow as pa
import pytest
from conftest import photo_bytes, write_photo
from deltalake import DeltaTable
from PIL import Image

from assets_pkg.catalog.mirror import sync_mirror
from assets_pkg.catalog.probe import InvalidImage, content_hash, probe_image
from assets_pkg.catalog.scan import scan_folder


def encoded(img: Image.Image, fmt: str, **save) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **save)
    return out.getvalue()


def test_probe_reads_facts_and_applies_exif_orientation():
    data = photo_bytes(1, size=(90, 60))
    facts = probe_image(data)
    assert (facts.format, facts.width, facts.height, facts.size_bytes) == ("JPEG", 90, 60, len(data))
    assert facts.image_id == content_hash(data)

    rotated = Image.open(io.BytesIO(data))
    exif = rotated.getexif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees
    facts = probe_image(encoded(rotated, "JPEG", exif=exif))
    assert (facts.width, facts.height) == (60, 90)


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file"),
    (b"<html><body>hello</body></html>", "not a recognised image"),
    (photo_bytes(2)[:300], "cannot decode"),
    (encoded(Image.new("RGB", (8, 8)), "BMP"), "unsupported format BMP"),
    (encoded(Image.new("1", (9000, 9000)), "PNG"), "too many pixels"),
])
def test_probe_rejects_bad_files_with_a_reason(data, reason):
    with pytest.raises(InvalidImage, match=reason):
        probe_image(data)


def test_scan_labels_from_subfolder_or_sidecar_and_reuses_unchanged_rows(tmp_path):
    write_photo(tmp_path / "Golden_Retriever" / "a.jpg", seed=1)
    write_photo(tmp_path / "b.png", seed=2)
    (tmp_path / "b.png.labels").write_text("Dog, beach\nsunny")
    (tmp_path / ".DS_Store").write_bytes(b"\0\0")
    (tmp_path / "broken.jpg").write_bytes(b"nope")

    first = scan_folder(tmp_path)
    rows = {r["path"]: r for r in first.manifest.to_pylist()}
    assert set(rows) == {"Golden_Retriever/a.jpg", "b.png"}
    assert rows["Golden_Retriever/a.jpg"]["labels"] == ["golden retriever"]
    assert rows["b.png"]["labels"] == ["beach", "dog", "sunny"]
    assert [(r.path, r.reason) for r in first.rejected] == [("broken.jpg", "not a recognised image file")]
    assert first.probed == 3

    second = scan_folder(tmp_path, previous=first.manifest)
    assert (second.probed, second.reused) == (1, 2)  # only the bad file is looked at again
    assert second.manifest.equals(first.manifest)


def test_mirror_keeps_statistics_off_the_bytes_and_appends_without_rewriting(tmp_path):
    images = tmp_path / "images"
    for i in range(3):
        write_photo(images / f"{i}.jpg", seed=i)
    table = tmp_path / "mirror"
    sync_mirror(table, scan_folder(images).manifest, images)
    files_before = set(DeltaTable(str(table)).file_uris())

    write_photo(images / "3.jpg", seed=3)
    changes = sync_mirror(table, scan_folder(images).manifest, images)
    dt = DeltaTable(str(table))
    assert changes.added and set(dt.file_uris()) > files_before, "existing files are kept, one is added"
    minimums = pa.table(dt.get_add_actions(flatten=False)).schema.field("min").type
    assert "image_id" in minimums.names and "bytes" not in minimums.names
