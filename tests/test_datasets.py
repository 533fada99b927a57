import json

import pytest

from revisor.model.errors import DatasetError
from revisor.training.datasets import load_dataset, strip_diff_markers
from tests.conftest import shared_path

RECORD = {"_id": 7, "old": " a = 1\n-b = 2", "new": " a = 1\n+b = 3", "review": "use 3", "language": "py",
          "model_code": "a = 1\nb = 3", "gpt_code": "a = 1"}


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_codereviewer_record_becomes_an_example(tmp_path):
    example = load_dataset(write_jsonl(tmp_path / "d.jsonl", [RECORD])).examples[0]
    assert (example.id, example.code_before, example.code_after) == ("7", "a = 1\nb = 2", "a = 1\nb = 3")
    assert example.comment == "use 3" and example.language == "py"
    assert example.peers == {"codereviewer": "a = 1\nb = 3", "chatgpt": "a = 1"}


def test_strip_diff_markers_drops_the_first_character_of_every_line():
    assert strip_diff_markers("+x\n- y\n  z") == "x\n y\n z"


def test_malformed_row_names_file_line_and_field(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [RECORD, {**RECORD, "review": None}, "{not json"])
    with pytest.raises(DatasetError, match=r"d\.jsonl:2: missing field 'review'"):
        load_dataset(path)
    dataset = load_dataset(path, skip_malformed=True)
    assert len(dataset.examples) == 1
    assert len(dataset.skipped) == 2
    assert "d.jsonl:3: not valid JSON" in dataset.skipped[1]


def test_tufano_csv(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(',comment,before,before_marked,after\n'
                    '0,"use x","int a;\n","START int a; END","int x;\n"\n')
    example = load_dataset(path).examples[0]
    assert (example.comment, example.code_before, example.code_after, example.language) == (
        "use x", "int a;\n", "int x;\n", "java")


def test_tufano_csv_missing_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("comment,before\nx,y\n")
    with pytest.raises(DatasetError, match="missing column"):
        load_dataset(path)


def test_missing_unknown_and_non_utf8_files(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "nope.jsonl")
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DatasetError, match="unknown format"):
        load_dataset(tmp_path / "d.txt")
    (tmp_path / "bad.jsonl").write_bytes(b'{"old": "\xff"}\n')
    with pytest.raises(DatasetError, match="not UTF-8"):
        load_dataset(tmp_path / "bad.jsonl")


@pytest.mark.parametrize("relative,rows", [
    ("datasets/codereviewer/train.jsonl", 1596),
    ("datasets/codereview-new/validation.jsonl", 1120),
    ("datasets/tufano2021/val.csv", 1719),
])
def test_shared_datasets_load_whole(relative, rows):
    dataset = load_dataset(shared_path(relative))
    assert len(dataset.examples) == rows and dataset.skipped == []
