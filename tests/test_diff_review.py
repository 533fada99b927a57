from pathlib import Path

import pytest

from revisor.bot.diff import parse_diff
from revisor.bot.pipeline import Budget, LineComment, review
from revisor.model.errors import DiffError, RevisorError
from revisor.model.prompts import ZeroShot
from revisor.model.reviser import Reviser
from tests.fakes import FakeEngine

DEMO = (Path(__file__).parents[1] / "examples" / "demo.diff").read_text()

BINARY = """diff --git a/logo.png b/logo.png
index 1111111..2222222 100644
Binary files a/logo.png and b/logo.png differ
"""


def test_changed_regions_are_runs_of_added_lines_with_new_side_numbers():
    regions = parse_diff(DEMO).changed_regions()
    assert [(r.path, r.start, r.end) for r in regions] == [("app/storage.py", 10, 20)]
    assert regions[0].code.startswith("def save_settings(path, settings):\n")
    split = parse_diff(DEMO).changed_regions(max_lines=6)
    assert [(r.start, r.end) for r in split] == [(10, 13), (16, 20)]


def test_region_at_takes_lines_from_one_hunk():
    region = parse_diff(DEMO).region_at("app/storage.py", 11, 13)
    assert region.code == '    f = open(path, "w")\n    f.write(json.dumps(settings))\n    f.close()\n'
    with pytest.raises(DiffError, match="not within one hunk"):
        parse_diff(DEMO).region_at("app/storage.py", 20, 40)
    with pytest.raises(DiffError, match="not in the diff"):
        parse_diff(DEMO).region_at("other.py", 1, 1)


def test_bad_diffs_get_clear_errors():
    with pytest.raises(DiffError, match="empty"):
        parse_diff("  \n")
    with pytest.raises(DiffError, match="unified diff"):
        parse_diff("hello world\n")


def test_line_comment_spec():
    assert LineComment.parse("a/b.py:3-5=use with") == LineComment("a/b.py", 3, 5, "use with")
    assert LineComment.parse("x.go:7=nit") == LineComment("x.go", 7, 7, "nit")
    for bad in ("x.go=7", "x.go:5-3=t", "x.go:1="):
        with pytest.raises(RevisorError):
            LineComment.parse(bad)


def reviser(answer):
    engine = FakeEngine(answer)
    return Reviser(engine, ZeroShot()), engine


def test_comment_is_revised_into_a_suggestion_on_exactly_those_lines():
    answer = "```python\nwith open(path, 'w') as f:\n    f.write(json.dumps(settings))\n```"
    rev, engine = reviser(lambda code: answer)
    comment = LineComment("app/storage.py", 11, 13, "use a context manager")
    result = review(parse_diff(DEMO), rev, [comment], Budget())
    assert len(result.suggestions) == 1
    suggestion = result.suggestions[0]
    assert (suggestion.region.start, suggestion.region.end) == (11, 13)
    assert suggestion.replacement == "    with open(path, 'w') as f:\n        f.write(json.dumps(settings))\n"
    assert suggestion.rationale == "use a context manager"
    assert "use a context manager" in engine.requests[0].messages[-2]["content"]


def test_unchanged_or_empty_answers_give_no_suggestion():
    rev, _ = reviser(lambda code: code)
    result = review(parse_diff(DEMO), rev, [], Budget())
    assert result.suggestions == [] and result.no_suggestion[0][1].reason.endswith("unchanged")
    rev, _ = reviser(lambda code: "")
    result = review(parse_diff(DEMO), rev, [], Budget())
    assert result.no_suggestion[0][1].reason == "the model returned no code"


def test_budget_reports_what_it_leaves_out_and_binary_files():
    rev, engine = reviser(lambda code: code + "# revised\n")
    diff = parse_diff(DEMO + BINARY)
    all_regions = diff.changed_regions()
    result = review(diff, rev, [], Budget(max_regions=1))
    assert result.regions_reviewed == 1 == len(engine.requests)
    assert len(result.over_budget) == len(all_regions) - 1
    assert result.skipped_files == [("logo.png", "binary file")]
    few_tokens = review(parse_diff(DEMO), reviser(lambda c: c.upper())[0], [], Budget(max_tokens=5))
    assert few_tokens.regions_reviewed == 0
    assert few_tokens.over_budget[0][1] == "over --max-tokens 5"


def test_a_file_renamed_without_changes_is_not_reported_as_binary():
    from types import SimpleNamespace

    from revisor.bot.github import file_patch_diff

    def changed(name: str, status: str, patch: str | None, changes: int, before: str | None = None):
        return SimpleNamespace(filename=name, previous_filename=before, status=status, patch=patch,
                               changes=changes)

    files = [changed("app/new.py", "renamed", None, 0, "app/old.py"),
             changed("logo.png", "modified", None, 0),
             changed("app/x.py", "modified", "@@ -1 +1 @@\n-x = 1\n+x = 2", 2)]
    diff = parse_diff(file_patch_diff(files))
    assert diff.binary_files == ["logo.png"]
    assert [r.path for r in diff.changed_regions()] == ["app/x.py"]
