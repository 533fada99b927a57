"""The syntax check: a suggestion that adds parse errors is held back, with the reason."""

import json

import pytest

from revisor.bot.diff import parse_diff
from revisor.bot.pipeline import Budget, review
from revisor.bot.report import review_text
from revisor.model.prompts import ZeroShot
from revisor.model.reviser import Reviser
from revisor.model.schema import BrokenSyntax, Revision, RevisionTask
from revisor.model.syntax import GRAMMARS, added_parse_errors, parse_errors
from revisor.training.bench import BenchConfig, run_bench
from tests.fakes import FakeEngine

FRAGMENTS = {  # a fragment of a hunk that parses, and the same with a bracket lost
    "python": ("if ready:\n    start(x)\n", "if ready:\n    start(x\n"),
    "java": ("int total = add(a, b);\n", "int total = add(a, b;\n"),
    "go": ("func f() {\n\treturn g(x)\n}\n", "func f() {\n\treturn g(x\n}\n"),
    "javascript": ("const total = add(a, b);\n", "const total = add(a, b;\n"),
    "c": ("int f(void) { return g(x); }\n", "int f(void) { return g(x; }\n"),
    "cpp": ("int f() { return g(x); }\n", "int f() { return g(x; }\n"),
    "csharp": ("var total = Add(a, b);\n", "var total = Add(a, b;\n"),
    "php": ("<?php\n$total = add($a, $b);\n", "<?php\n$total = add($a, $b;\n"),
    "ruby": ("total = add(a, b)\n", "total = add(a, b\n"),
}


@pytest.mark.parametrize("language", sorted(GRAMMARS))
def test_every_grammar_finds_the_error_a_lost_bracket_makes(language):
    good, broken = FRAGMENTS[language]
    assert parse_errors(good, language) == 0
    assert parse_errors(broken, language) > 0
    assert added_parse_errors(good, broken, language) > 0 and added_parse_errors(broken, good, language) == 0


def test_dataset_codes_name_grammars_and_unknown_languages_pass():
    assert parse_errors("x = (1,\n", "py") > 0 and parse_errors("var x = (1;\n", ".cs") > 0
    assert parse_errors("x = (1,\n", "cobol") is None
    assert added_parse_errors("x = 1\n", "x = (1,\n", "") == 0


def test_a_fragment_that_did_not_parse_is_judged_by_the_errors_it_adds():
    original = "    return total\n}\n"  # the end of a function: a fragment that does not parse alone
    assert parse_errors(original, "go") > 0
    assert added_parse_errors(original, "    return total + 1\n}\n", "go") == 0


def test_a_revision_that_breaks_the_syntax_is_held_back_with_its_reason():
    task = RevisionTask("if ready:\n    start(x)\n", "pass y too", "py")
    broken = Reviser(FakeEngine(lambda code: "if ready:\n    start(x, y\n"), ZeroShot()).revise([task])[0]
    assert isinstance(broken.outcome, BrokenSyntax) and broken.outcome.code == "if ready:\n    start(x, y\n"
    assert "adds 1 syntax error(s)" in broken.outcome.reason
    assert broken.features is None and broken.confidence is None
    fine = Reviser(FakeEngine(lambda code: "if ready:\n    start(x, y)\n"), ZeroShot()).revise([task])[0]
    assert isinstance(fine.outcome, Revision)


def test_review_and_bench_say_which_revisions_broke_the_syntax(tmp_path):
    diff = parse_diff("diff --git a/app.py b/app.py\n--- a/app.py\n+++ b/app.py\n@@ -0,0 +1,2 @@\n"
                      "+if ready:\n+    start(x)\n")
    engine = FakeEngine(lambda code: code.replace("start(x)", "start(x, y"))
    result = review(diff, Reviser(engine, ZeroShot()), [], Budget())
    assert result.suggestions == []
    assert "no suggestion for app.py:1-2: the revision adds 1 syntax error(s)" in review_text(result)

    dataset = tmp_path / "pairs.jsonl"
    dataset.write_text(json.dumps({"old": " if ready:\n     start(x)", "new": " if ready:\n     start(x, y)",
                                   "review": "pass y too", "language": "py"}) + "\n")
    config = BenchConfig(dataset=str(dataset), strategies=["zero-shot"], engines=["vllm"],
                         output=str(tmp_path / "bench"))
    report = run_bench(config, lambda model, engine_name, strategy: Reviser(engine, ZeroShot()))
    [row] = [json.loads(line) for line in (tmp_path / "bench" / "predictions.jsonl").read_text().splitlines()
             if json.loads(line)["system"].startswith("revisor")]
    assert row["confidence"] is None and "adds 1 syntax error(s)" in row["held_back"]
    assert "1 revision(s) held back at any threshold for adding syntax errors (0 of them exact)" in report
