import json

import pytest

from revisor.training.datasets import load_dataset
from revisor.training.metrics import exact_match, score_system
from tests.conftest import shared_path


def test_exact_match_collapses_whitespace_only():
    assert exact_match("if x:\n    return  1\n", "if x:\n\treturn 1")
    assert not exact_match("return 1", "return 2")
    assert not exact_match("returnx", "return x")


def test_reproduces_stored_flags_row_for_row_on_the_whole_test_set():
    path = shared_path("datasets/codereviewer/test.jsonl")
    records = [json.loads(line) for line in path.open()]
    examples = load_dataset(path).examples
    assert len(examples) == len(records) == 984
    for peer, field, flag in (("codereviewer", "model_code", "model_em"), ("chatgpt", "gpt_code", "gpt_em")):
        mismatches = [
            r["_id"] for r, e in zip(records, examples, strict=True)
            if exact_match(e.peers[peer], e.code_after) != bool(r[flag])
        ]
        assert mismatches == [], f"{field} disagrees with {flag}"
    scores = {peer: score_system(peer, examples, [e.peers[peer] for e in examples])
              for peer in ("codereviewer", "chatgpt")}
    assert scores["codereviewer"].exact_match == pytest.approx(0.314, abs=5e-4)
    assert scores["chatgpt"].exact_match == pytest.approx(0.146, abs=5e-4)


def test_score_counts_unchanged_and_empty_predictions(tmp_path):
    from revisor.model.schema import Example

    examples = [Example("1", "a = f(1, 2)", "rename", "b = f(1, 2)"), Example("2", "x(3)", "call y", "y(3)")]
    score = score_system("s", examples, ["a  =  f(1, 2)", ""])
    assert (score.n, score.exact_match, score.unchanged, score.empty) == (2, 0.0, 0.5, 0.5)
    perfect = score_system("p", examples, ["b = f(1,  2)", "y(3)"])
    assert perfect.exact_match == 1.0 and perfect.bleu == pytest.approx(100.0)
