"""Catalog domain code: image validation, folder scan, labels, the mirror's storage properties."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import photo_bytes, write_photo
from deltalake import DeltaTable, write_deltalake
from PIL import Image

from assets_pkg.catalog.mirror import (
    desired_state,
    desired_table,
    purge_deleted_bytes,
    read_image_bytes,
    read_mirror_metadata,
    sync_mirror,
)
from assets_pkg.catalog.probe import InvalidImage, content_hash, probe_image
from assets_pkg.catalog.scan import scan_folder
from assets_pkg.layout import MIRROR_BYTES_SCHEMA, MIRROR_SCHEMA, mirror_bytes_table


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
    assert [(r.path, r.reason) for r in first.rejected] == [
        ("broken.jpg", ("not a recognised image file: unknown format, not one of GIF, JPEG, PNG, WEBP "
                        "(the bytes start with 'nope')"))]
    assert first.probed == 3

    second = scan_folder(tmp_path, previous=first.manifest)
    assert (second.probed, second.reused) == (1, 2)  # only the bad file is looked at again
    assert second.manifest.equals(first.manifest)


def sync(images: Path, table: Path):
    return sync_mirror(table, scan_folder(images).manifest, images)


def log_version(table: Path) -> int:
    return DeltaTable(str(table)).version()


def bytes_written(table: Path, after_version: int) -> int:
    """Sizes of the files the commits after `after_version` added, from the table's Delta log."""
    total = 0
    for commit in sorted((table / "_delta_log").glob("*.json")):
        if int(commit.stem) > after_version:
            total += sum(json.loads(line).get("add", {}).get("size", 0) for line in commit.read_text().splitlines())
    return total


def stored_ids(table: Path) -> list[str]:
    """Every image id in the bytes table's current snapshot, dead or alive."""
    return sorted(DeltaTable(str(mirror_bytes_table(table))).to_pyarrow_table(columns=["image_id"])["image_id"].to_pylist())


@pytest.fixture
def photos(tmp_path: Path) -> tuple[Path, Path]:
    """Eight ~15 KB JPEGs, mirrored: (images folder, mirror table)."""
    images = tmp_path / "images"
    for i in range(8):
        write_photo(images / "dog" / f"{i}.jpg", seed=i, size=(320, 240))
    table = tmp_path / "lake" / "image_mirror"
    assert len(sync(images, table).added) == 8
    return images, table


def test_mirror_keeps_statistics_off_the_bytes_and_appends_without_rewriting(photos):
    images, table = photos
    files_before = set(DeltaTable(str(mirror_bytes_table(table))).file_uris())
    write_photo(images / "8.jpg", seed=8)
    changes = sync(images, table)
    dt = DeltaTable(str(mirror_bytes_table(table)))
    assert changes.added and set(dt.file_uris()) > files_before, "existing files are kept, one is added"
    minimums = pa.table(dt.get_add_actions(flatten=False)).schema.field("min").type
    assert "image_id" in minimums.names and "bytes" not in minimums.names
    parquet = pq.ParquetFile(next(iter(set(dt.file_uris()) - files_before)))
    column = parquet.schema_arrow.names.index("bytes")
    assert not parquet.metadata.row_group(0).column(column).is_stats_set


def test_desired_table_groups_copies_like_desired_state(tmp_path):
    images = tmp_path / "images"
    write_photo(images / "dog" / "a.jpg", seed=1)
    shutil.copy(images / "dog" / "a.jpg", images / "b.jpg")  # same bytes, no label
    write_photo(images / "cat" / "c.jpg", seed=2)
    shutil.copy(images / "cat" / "c.jpg", images / "dog" / "c.jpg")  # same bytes, two labels
    (images / "dog" / "c.jpg.labels").write_text("Pet, dog")
    manifest = scan_folder(images).manifest
    table = desired_table(manifest).to_pylist()
    assert table == sorted(desired_state(manifest).values(), key=lambda r: r["image_id"])
    assert sorted(r["labels"] for r in table) == [["cat", "dog", "pet"], ["dog"]]


def test_a_rename_writes_metadata_only_and_no_bytes(photos):
    images, table = photos
    bytes_version = log_version(mirror_bytes_table(table))
    (images / "dog" / "3.jpg").rename(images / "moved.jpg")
    changes = sync(images, table)
    moved_id = content_hash((images / "moved.jpg").read_bytes())
    assert (changes.moved, changes.added, changes.removed, changes.bytes_added) == ([moved_id], [], [], 0)
    assert log_version(mirror_bytes_table(table)) == bytes_version, "the bytes table got no commit"
    moved = [r for r in read_mirror_metadata(table).to_pylist() if r["paths"] == ["moved.jpg"]]
    assert len(moved) == 1 and moved[0]["labels"] == []


def test_a_delete_leaves_the_mirror_at_once_and_writes_at_most_twice_its_bytes(photos):
    images, table = photos
    victim = images / "dog" / "5.jpg"
    victim_id, victim_size = content_hash(victim.read_bytes()), victim.stat().st_size
    versions = {t: log_version(t) for t in (table, mirror_bytes_table(table))}
    victim.unlink()
    changes = sync(images, table)
    assert changes.removed == [victim_id]
    written = sum(bytes_written(t, v) for t, v in versions.items())
    assert 0 < written <= 2 * victim_size, f"{written} bytes written for a {victim_size}-byte image"
    assert victim_id not in read_mirror_metadata(table)["image_id"].to_pylist()
    assert read_image_bytes(table, [victim_id]) == {}, "a deleted image's bytes are not served"
    # One image out of eight is below the compaction share: its row waits in the bytes table, counted.
    assert victim_id in stored_ids(table) and changes.dead_bytes == victim_size


def test_compaction_drops_dead_bytes_and_rewrites_no_more_than_it_drops(photos):
    images, table = photos
    sizes = [(images / "dog" / f"{i}.jpg").stat().st_size for i in range(8)]
    for i in range(3):
        (images / "dog" / f"{i}.jpg").unlink()
    first = sync(images, table)
    assert first.bytes_dropped == 0 and len(stored_ids(table)) == 8, "3 of 8 dead: below half, kept"
    version = log_version(mirror_bytes_table(table))
    (images / "dog" / "3.jpg").unlink()
    (images / "dog" / "4.jpg").unlink()
    second = sync(images, table)  # 5 of 8 dead: the batch is compacted
    live = read_mirror_metadata(table)["image_id"].to_pylist()
    assert stored_ids(table) == sorted(live) and len(live) == 3
    assert (second.bytes_dropped, second.bytes_rewritten, second.dead_bytes) == (sum(sizes[:5]), sum(sizes[5:]), 0)
    assert second.bytes_rewritten <= second.bytes_dropped
    assert bytes_written(mirror_bytes_table(table), version) <= second.bytes_dropped * 1.1  # Parquet framing
    assert set(read_image_bytes(table, live)) == set(live)

    for path in list((images / "dog").iterdir()):  # every image of the batch gone: dropped, nothing written
        path.unlink()
    version = log_version(mirror_bytes_table(table))
    last = sync(images, table)
    assert last.bytes_dropped > 0 and last.bytes_rewritten == 0
    assert stored_ids(table) == [] and bytes_written(mirror_bytes_table(table), version) == 0


def test_an_image_that_comes_back_reuses_its_stored_bytes(photos, tmp_path):
    images, table = photos
    shutil.move(images / "dog" / "2.jpg", tmp_path / "aside.jpg")
    sync(images, table)
    shutil.move(tmp_path / "aside.jpg", images / "dog" / "2.jpg")
    bytes_version = log_version(mirror_bytes_table(table))
    back = sync(images, table)
    assert len(back.added) == 1 and back.bytes_added == 0
    assert log_version(mirror_bytes_table(table)) == bytes_version
    assert read_image_bytes(table, back.added) == {back.added[0]: (images / "dog" / "2.jpg").read_bytes()}


def test_purge_leaves_no_file_holding_a_deleted_image(photos):
    images, table = photos
    victim = images / "dog" / "6.jpg"
    victim_id = content_hash(victim.read_bytes())
    victim.unlink()
    sync(images, table)
    assert purge_deleted_bytes(table) == len(photo_bytes(6, size=(320, 240)))
    on_disk = [i for f in mirror_bytes_table(table).rglob("*.parquet")
               for i in pq.read_table(f, columns=["image_id"])["image_id"].to_pylist()]
    assert victim_id not in on_disk and len(on_disk) == 7, "no file, current or old, still holds it"
    assert len(read_image_bytes(table, read_mirror_metadata(table)["image_id"].to_pylist())) == 7


def test_a_one_table_mirror_is_converted_keeping_its_bytes(tmp_path):
    images = tmp_path / "images"
    for i in range(3):
        write_photo(images / f"{i}.jpg", seed=i)
    manifest = scan_folder(images).manifest
    table = tmp_path / "image_mirror"
    old_rows = [{"image_id": r["image_id"], "bytes": (images / r["path"]).read_bytes(), "format": r["format"],
                 "width": r["width"], "height": r["height"], "size_bytes": r["size_bytes"], "labels": [],
                 "paths": [r["path"]], "added_at": None} for r in manifest.to_pylist()]
    one_table_schema = MIRROR_SCHEMA.insert(1, pa.field("bytes", pa.binary()))  # the earlier layout
    write_deltalake(str(table), pa.Table.from_pylist(old_rows, schema=one_table_schema))
    for path in images.iterdir():  # renamed: the sync reads no file, so the bytes can only come from the old table
        path.rename(path.with_name("renamed-" + path.name))
    changes = sync(images, table)
    assert changes.bytes_added == 0 and len(changes.moved) == 3
    assert "bytes" not in {f.name for f in DeltaTable(str(table)).schema().fields}
    assert read_image_bytes(table, [r["image_id"] for r in old_rows]) == {r["image_id"]: r["bytes"] for r in old_rows}
    assert {f.name for f in DeltaTable(str(mirror_bytes_table(table))).schema().fields} == set(MIRROR_BYTES_SCHEMA.names)


def test_table_assets_carry_dagsters_standard_table_metadata(resources, instance, layout):
    """Row count, column schema, URI and table name under the `dagster/` keys the asset page shows."""
    import dagster as dg

    from orchestration.definitions import CATALOG_ASSETS

    result = dg.materialize(CATALOG_ASSETS, resources=resources, instance=instance)
    found = {e.asset_key.to_user_string(): e.materialization.metadata
             for e in result.get_asset_materialization_events()}
    for asset, rows in (("image_manifest", 12), ("image_mirror", 12), ("image_embeddings", 12), ("image_index", 12)):
        metadata = found[asset]
        assert metadata["dagster/row_count"].value == rows, asset
        columns = [c.name for c in metadata["dagster/column_schema"].value.columns]
        assert "image_id" in columns, (asset, columns)
        assert metadata["dagster/uri"].value.startswith(str(layout.data_dir)), asset
    assert found["image_index"]["dagster/uri"].value.endswith(".lance")
    assert "vector" in [c.name for c in found["image_index"]["dagster/column_schema"].value.columns]
