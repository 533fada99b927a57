from revisor.model.parsing import extract_code, parse_revision, reindent
from revisor.model.schema import NoRevision, Revision

ORIGINAL = "    f = open(p)\n    data = f.read()\n"


def test_continued_fence_stopped_at_closing_fence():
    outcome = parse_revision("```python\nwith open(p) as f:\n    data = f.read()\n", ORIGINAL)
    assert outcome == Revision("    with open(p) as f:\n        data = f.read()\n")


def test_fenced_answer_with_prose_around_it():
    answer = "Sure! Here it is:\n```py\nwith open(p) as f:\n    data = f.read()\n```\nThis closes the file."
    assert parse_revision(answer, ORIGINAL) == Revision("    with open(p) as f:\n        data = f.read()\n")


def test_unfenced_answer_is_taken_whole():
    assert extract_code("x = 2\n") == "x = 2\n"
    assert parse_revision("x = 2", "x = 1") == Revision("x = 2")


def test_tilde_fences_and_longer_fences():
    assert extract_code("~~~\na\n~~~") == "a\n"
    assert extract_code("````\nuse ```x```\n````") == "use ```x```\n"


def test_empty_or_unchanged_answers_are_no_revision():
    assert isinstance(parse_revision("", ORIGINAL), NoRevision)
    assert isinstance(parse_revision("```python\n\n```", ORIGINAL), NoRevision)
    unchanged = parse_revision("```\nf = open(p)\ndata =  f.read()\n```", ORIGINAL)
    assert unchanged == NoRevision("the model returned the original code unchanged")


def test_reindent_keeps_relative_indentation():
    assert reindent("if a:\n    b()\n", "\t\tx\n") == "\t\tif a:\n\t\t    b()\n"


def test_a_repeated_opening_fence_after_the_prefill_is_dropped():
    assert extract_code("```python\n```python\nx = 2\n```") == "x = 2\n"


def test_context_lines_the_model_repeats_are_dropped():
    before = "import json\n\n\ndef save(path, data):\n"
    after = "\n\ndef load(path):\n"
    answer = ("```python\ndef save(path, data):\n    with open(path, 'w') as f:\n"
              "        f.write(data)\n\n\ndef load(path):\n```")
    original = "    f = open(path, 'w')\n    f.write(data)\n    f.close()\n"
    outcome = parse_revision(answer, original, before, after)
    assert outcome == Revision("    with open(path, 'w') as f:\n        f.write(data)\n")
    # Lines that only look like context inside the revision stay.
    kept = parse_revision("```\nx = 1\ny = 2\n```", "x = 0\ny = 2\n", "", "y = 2\n")
    assert kept == Revision("x = 1\ny = 2\n")


def test_an_answer_for_the_whole_hunk_keeps_only_the_commented_lines_or_is_held_back():
    before, after = "def f(path):\n    # read it\n", "    return data\n"
    code = "    data = open(path).read()\n"
    hunk = 2  # both lines before and the one after were shown as part of the code
    rewritten = ("```python\ndef f(path):\n    # read it\n    with open(path) as handle:\n"
                 "        data = handle.read()\n    return data\n```")
    assert parse_revision(rewritten, code, before, after, hunk) == Revision(
        "    with open(path) as handle:\n        data = handle.read()\n")
    without_context = "```python\n    with open(path) as handle:\n        data = handle.read()\n```"
    assert isinstance(parse_revision(without_context, code, before, after, hunk), NoRevision)
    elsewhere = ("```python\ndef f(filename):\n    # read it\n    data = open(filename).read()\n"
                 "    return data\n```")
    outcome = parse_revision(elsewhere, code, before, after, hunk)
    assert isinstance(outcome, NoRevision) and "lines around the commented ones" in outcome.reason
    deleted = "```python\ndef f(path):\n    # read it\n    return data\n```"
    assert isinstance(parse_revision(deleted, code, before, after, hunk), NoRevision)  # nothing to post
