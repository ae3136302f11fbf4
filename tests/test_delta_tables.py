"""Delta helpers: filtered reads over delta-rs-rewritten files, and commit conflicts that retry."""

from __future__ import annotations

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

from assets_pkg.delta_tables import read_table, sql_in, with_commit_retry

SCHEMA = pa.schema([("id", pa.string()), ("n", pa.int64())])


def test_filtered_reads_work_after_a_merge_rewrote_files(tmp_path):
    write_deltalake(str(tmp_path), pa.table({"id": ["a", "b", "c"], "n": [1, 2, 3]}, schema=SCHEMA))
    (DeltaTable(str(tmp_path)).merge(pa.table({"id": ["a"], "n": [10]}, schema=SCHEMA), "t.id = s.id",
                                     source_alias="s", target_alias="t")
     .when_matched_update({"n": "s.n"}).execute())
    rows = read_table(tmp_path, SCHEMA, where=sql_in("id", ["a", "c"]))
    assert rows.schema == SCHEMA  # plain types, not the view types delta-rs wrote
    assert sorted(rows.to_pylist(), key=lambda r: r["id"]) == [{"id": "a", "n": 10}, {"id": "c", "n": 3}]
    assert read_table(tmp_path / "missing", SCHEMA).num_rows == 0


def test_a_losing_writer_retries_against_the_new_version(tmp_path):
    write_deltalake(str(tmp_path), pa.table({"id": ["a", "b"], "n": [1, 2]}, schema=SCHEMA))
    stale = DeltaTable(str(tmp_path))
    DeltaTable(str(tmp_path)).delete("id = 'a'")  # another writer commits first
    with pytest.raises(CommitFailedError):
        stale.delete("id = 'a'")  # a blind retry on the stale snapshot conflicts

    attempts = []

    def delete_b():
        attempts.append(1)
        table = stale if len(attempts) == 1 else DeltaTable(str(tmp_path))
        table.delete("id = 'b'")

    with_commit_retry(delete_b)
    assert len(attempts) == 2 and read_table(tmp_path, SCHEMA).num_rows == 0


def test_commit_conflicts_give_up_with_a_clear_message():
    def always_conflicts():
        raise CommitFailedError("concurrent delete")

    with pytest.raises(CommitFailedError, match="gave up after 3 concurrent-commit conflicts"):
        with_commit_retry(always_conflicts, attempts=3)
