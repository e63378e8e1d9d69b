"""Stage inputs: files, and the first rows of a dataset repository read by streaming (`--limit`)."""

from __future__ import annotations

import json

import datasets
import pytest

from distill.artifacts import sources


@pytest.fixture
def dataset_repo(tmp_path):
    """A dataset repository laid out as on the Hub (data/<split>-NNNNN-of-NNNNN.parquet, three shards)."""
    repo = tmp_path / "org--problems"
    (repo / "data").mkdir(parents=True)
    rows = [{"problem": f"What is {i} + {i}?", "answer": str(2 * i), "level": i % 5} for i in range(300)]
    for shard in range(3):
        part = datasets.Dataset.from_list(rows[shard * 100:(shard + 1) * 100])
        part.to_parquet(str(repo / "data" / f"train-{shard:05d}-of-00003.parquet"))
    return repo, rows


def test_limit_streams_only_the_first_rows_with_their_types(dataset_repo):
    repo, rows = dataset_repo
    data, source = sources._load_hub(str(repo), "train", None, None, limit=7)
    assert data.to_list() == rows[:7]  # the first rows, in order, as a full read would give them
    assert data.features["level"].dtype == "int64" and data.features["problem"].dtype == "string"
    assert source.info["streamed_rows"] == 7 and source.info["split"] == "train"
    whole, whole_source = sources._load_hub(str(repo), "train", None, None)
    assert whole.select(range(7)).to_list() == data.to_list() and "streamed_rows" not in whole_source.info
    more, _ = sources._load_hub(str(repo), "train", None, None, limit=1000)
    assert len(more) == 300  # a limit past the end is the whole split


def test_limit_reads_only_the_files_that_hold_the_first_rows(dataset_repo):
    from distill.errors import UserError

    repo, rows = dataset_repo
    (repo / "data" / "train-00002-of-00003.parquet").write_bytes(b"not parquet")  # a file never reached
    data, _ = sources._load_hub(str(repo), "train", None, None, limit=150)
    assert data.to_list() == rows[:150]
    with pytest.raises(UserError, match="cannot load Hub dataset"):
        sources._load_hub(str(repo), "train", None, None)  # a full read reaches it


def test_a_missing_split_is_a_one_line_error(dataset_repo):
    from distill.errors import UserError

    repo, _ = dataset_repo
    with pytest.raises(UserError, match="cannot load Hub dataset .*split test"):
        sources._load_hub(str(repo), "test", None, None, limit=3)


def test_empty_files_have_no_rows(tmp_path):
    from distill.errors import UserError

    (tmp_path / "a.jsonl").write_text("")
    (tmp_path / "b.jsonl").write_text(json.dumps({"problem": "x"}) + "\n")
    with pytest.raises(UserError, match="has no rows"):
        sources.load_input(str(tmp_path / "a.jsonl"))
    data, source = sources.load_input(str(tmp_path / "b.jsonl"))
    assert len(data) == 1 and source.info["type"] == "file" and len(source.info["sha256"]) == 64
