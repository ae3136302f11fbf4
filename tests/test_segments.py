"""The segments file, its safe partition keys, and the sensor that syncs partitions with it."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from assets_pkg.campaigns.segments import load_segments
from assets_pkg.layout import DataLayout, require_safe_key, slugify
from assets_pkg.resources import DataStore
from orchestration.sensors import segments_sensor


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_keys_are_safe_unique_and_bounded(tmp_path):
    path = write(tmp_path / "s.yaml", """
segments:
  - {name: "Young urban professionals", description: city}
  - {name: "../../etc/passwd", description: traversal}
  - {name: "Café Owners / Paris", description: unicode and slash}
  - {name: "%s", description: long}
  - {name: "家族", description: no ascii left}
  - {name: "", description: empty name}
  - {name: "No description"}
  - {name: Explicit, description: d, key: "Bad Key"}
  - {name: Explicit2, description: d, key: aquarium}
  - not a mapping
""" % ("x" * 500))
    parsed = load_segments(path)
    keys = [s.key for s in parsed.segments]
    assert keys[:3] == ["young-urban-professionals", "etc-passwd", "cafe-owners-paris"]
    assert len(keys[3]) == 64 and keys[3] == "x" * 64
    assert keys[4].startswith("segment-") and keys[5] == "aquarium"
    assert len(keys) == len(set(keys)) == 6
    for key in keys:
        assert require_safe_key(key) == key
    assert parsed.segments[1].name == "../../etc/passwd", "display names stay as written"
    assert parsed.errors == [
        "segment #6 (line 8): missing 'name'",
        "segment #7 (line 9): 'No description': missing 'description'",
        "segment #8 (line 10): 'Explicit': key 'Bad Key' must be 1-64 chars of [a-z0-9-]",
        "segment #10 (line 12): expected a mapping with at least 'name' and 'description'",
    ]


def test_two_segments_with_one_key_make_the_file_invalid_naming_both(tmp_path):
    """No silent `-2` suffix: which segment got it would depend on the file's order, and a key carries
    its segment's ads and review history. Explicit keys clash with derived ones the same way."""
    path = write(tmp_path / "s.yaml", """segments:
  - name: Dog owners
    description: people with dogs
  - {name: Cats, description: cat people}
  - name: "Dog Owners!"
    description: the same key, by accident
  - {name: Fish, description: fish people, key: cats}
""")
    with pytest.raises(ValueError) as raised:
        load_segments(path)
    assert str(raised.value) == (
        f"segments file {path}: segment #1 'Dog owners' (line 2) and segment #3 'Dog Owners!' (line 5) both have "
        "the key 'dog-owners'; segment #2 'Cats' (line 4) and segment #4 'Fish' (line 7) both have the key 'cats': "
        "give each segment its own name or an explicit `key:` (a key carries its segment's ads and review history)")


def test_invalid_yaml_and_unsafe_paths_fail_clearly(tmp_path):
    bad = write(tmp_path / "bad.yaml", "segments:\n  - name: A\n    description: a\n  - name: B\n   description: [b\n")
    with pytest.raises(ValueError) as raised:
        load_segments(bad)
    assert str(raised.value) == (f"segments file {bad} is not valid YAML: line 5, column 4: expected <block end>, "
                                 "but found '<block mapping start>' (while parsing a block collection that starts "
                                 "on line 2)")
    with pytest.raises(FileNotFoundError):
        load_segments(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="unsafe segment key"):
        DataLayout.under(tmp_path).campaign_dir("../escape")
    assert slugify("  --Hello,  World--  ") == "hello-world"


def test_sensor_adds_new_segments_requests_their_runs_and_removes_deleted(tmp_path):
    segments = write(tmp_path / "segments.yaml", """
segments:
  - {name: Alpha, description: a}
  - {name: Beta, description: b}
""")
    store = DataStore(data_dir=str(tmp_path))
    with dg.instance_for_test() as instance:
        result = segments_sensor(dg.build_sensor_context(instance=instance, resources={"data_store": store}))
        [add] = result.dynamic_partitions_requests
        assert isinstance(add, dg.AddDynamicPartitionsRequest) and list(add.partition_keys) == ["alpha", "beta"]
        assert [r.partition_key for r in result.run_requests] == ["alpha", "beta"]
        instance.add_dynamic_partitions("segments", ["alpha", "beta"])

        write(segments, "segments:\n  - {name: Beta, description: b}\n  - {name: Gamma, description: c}\n")
        result = segments_sensor(dg.build_sensor_context(instance=instance, resources={"data_store": store}))
        add, delete = result.dynamic_partitions_requests
        assert list(add.partition_keys) == ["gamma"] and list(delete.partition_keys) == ["alpha"]
        assert [r.partition_key for r in result.run_requests] == ["gamma"]
        instance.add_dynamic_partitions("segments", ["gamma"])
        instance.delete_dynamic_partition("segments", "alpha")

        result = segments_sensor(dg.build_sensor_context(instance=instance, resources={"data_store": store}))
        assert not result.run_requests and not result.dynamic_partitions_requests

        # A broken file (bad YAML, two segments with one key) leaves the partitions as they are, saying why.
        for broken in ("segments:\n  - {name: Beta, description: b\n",
                       "segments:\n  - {name: Beta, description: b}\n  - {name: beta, description: again}\n"):
            write(segments, broken)
            result = segments_sensor(dg.build_sensor_context(instance=instance, resources={"data_store": store}))
            assert not result.run_requests and not result.dynamic_partitions_requests
            assert result.skip_reason.skip_message.endswith("; partitions left as they are")
            assert "\n" not in result.skip_reason.skip_message and "line 2" in result.skip_reason.skip_message
        assert sorted(instance.get_dynamic_partitions("segments")) == ["beta", "gamma"]


def test_hostile_segment_names_never_write_outside_the_data_dir(tmp_path, resources, instance, layout, data_dir):
    from orchestration.definitions import CAMPAIGN_ASSETS, CATALOG_ASSETS
    from orchestration.runner import sync_segment_partitions

    (data_dir / "segments.yaml").write_text("""
segments:
  - {name: "../../../escaped", description: parent traversal, subject: dog}
  - {name: "/etc/passwd", description: absolute path, subject: cat}
  - {name: "a/b\\\\c,d; rm -rf ~", description: separators and shell, subject: dog}
""")
    outside_before = {p for p in tmp_path.rglob("*") if data_dir not in p.parents and p != data_dir}
    assert dg.materialize(CATALOG_ASSETS, resources=resources, instance=instance).success
    keys = sync_segment_partitions(instance, layout.segments_file)
    assert keys == ["escaped", "etc-passwd", "a-b-c-d-rm-rf"]
    for key in keys:
        assert dg.materialize(CAMPAIGN_ASSETS, resources=resources, instance=instance, partition_key=key).success
    outside_after = {p for p in tmp_path.rglob("*") if data_dir not in p.parents and p != data_dir}
    assert outside_after == outside_before, "nothing written outside the data directory"
    assert sorted(p.name for p in (data_dir / "campaigns").iterdir()) == sorted(keys)
    assert not (Path.cwd() / "mlruns").exists(), "MLflow wrote only to the configured store"


def test_a_reference_photo_is_a_relative_path_found_under_the_images_folder_else_the_data_dir(tmp_path):
    from assets_pkg.campaigns.segments import reference_image_path

    path = write(tmp_path / "s.yaml", """
segments:
  - {name: In images, description: d, reference_image: dog/a.jpg}
  - {name: In data dir, description: d, reference_image: refs/b.jpg, reference_weight: 0.25}
  - {name: Absolute, description: d, reference_image: /etc/passwd}
  - {name: Escapes, description: d, reference_image: ../outside.jpg}
  - {name: Weight out of range, description: d, reference_image: dog/a.jpg, reference_weight: 2}
  - {name: Weight alone, description: d, reference_weight: 0.5}
  - {name: Missing, description: d, reference_image: dog/none.jpg}
""")
    parsed = load_segments(path)
    assert [s.key for s in parsed.segments] == ["in-images", "in-data-dir", "missing"]
    assert [(s.reference_image, s.reference_weight) for s in parsed.segments[:2]] == [("dog/a.jpg", 0.5),
                                                                                      ("refs/b.jpg", 0.25)]
    assert [e.split(":")[0] for e in parsed.errors] == ["segment #3 (line 5)", "segment #4 (line 6)",
                                                        "segment #5 (line 7)", "segment #6 (line 8)"]
    assert "relative" in parsed.errors[0] and "without '..'" in parsed.errors[1]
    assert "outside 0..1" in parsed.errors[2] and "without a reference_image" in parsed.errors[3]

    images, data = tmp_path / "images", tmp_path
    (images / "dog").mkdir(parents=True)
    (images / "dog" / "a.jpg").write_bytes(b"a")
    (data / "refs").mkdir()
    (data / "refs" / "b.jpg").write_bytes(b"b")
    in_images, in_data, missing = parsed.segments
    assert reference_image_path(in_images, images, data) == images / "dog" / "a.jpg"
    assert reference_image_path(in_data, images, data) == data / "refs" / "b.jpg"
    with pytest.raises(FileNotFoundError, match="segment 'missing': reference_image 'dog/none.jpg' is in neither"):
        reference_image_path(missing, images, data)
    assert reference_image_path(load_segments(write(tmp_path / "t.yaml", "segments: [{name: n, description: d}]"))
                                .segments[0], images, data) is None
