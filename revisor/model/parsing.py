"""Turning a model's answer into revised code, or into a reason there is none."""

from __future__ import annotations

import re
import textwrap
from difflib import SequenceMatcher

from revisor.model.schema import NoRevision, Revision, RevisionOutcome

_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})[^\n`]*\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.S | re.M)
_OPEN_FENCE = re.compile(r"^(`{3,}|~{3,})[^\n`]*\n", re.M)


def extract_code(answer: str) -> str:
    """The code in an answer: the first complete fenced block, else the text after an
    opening fence, else the whole answer (as from a prompt that opened the fence itself)."""
    match = _FENCE.search(answer)
    if match:
        code = match.group("body")
    elif opened := _OPEN_FENCE.search(answer):
        code = answer[opened.end() :]
    else:
        code = answer
    # A model continuing a prefilled fence sometimes opens it once more.
    while (again := _OPEN_FENCE.match(code)) and again.group(0).strip("`~\n").isidentifier():
        code = code[again.end() :]
    return code


def common_indent(code: str) -> str:
    lines = [line for line in code.splitlines() if line.strip()]
    if not lines:
        return ""
    prefix = lines[0][: len(lines[0]) - len(lines[0].lstrip())]
    for line in lines[1:]:
        while not line.startswith(prefix):
            prefix = prefix[:-1]
    return prefix


def reindent(code: str, like: str) -> str:
    """Give `code` the common indentation of `like`, keeping its own relative indentation."""
    body = textwrap.dedent(code)
    return textwrap.indent(body, common_indent(like))


def drop_echoed_context(code: str, original: str, before: str, after: str) -> str:
    """Without the lines around the code that the model was shown and wrote out again (unless
    the original code itself begins or ends with those lines)."""
    def stripped(text: str) -> list[str]:
        return [line.strip() for line in text.strip("\n").split("\n")] if text.strip() else []

    lines, own = code.split("\n"), stripped(original)
    shown_before, shown_after = stripped(before), stripped(after)
    for k in range(min(len(shown_before), len(lines) - 1), 0, -1):
        head = [ln.strip() for ln in lines[:k]]
        if head == shown_before[-k:] and any(head) and own[:k] != head:
            lines = lines[k:]
            break
    for k in range(min(len(shown_after), len(lines) - 1), 0, -1):
        tail = [ln.strip() for ln in lines[-k:]]
        if tail == shown_after[:k] and any(tail) and own[-k:] != tail:
            lines = lines[:-k]
            break
    return "\n".join(lines)


def context_lines(before: str, after: str, hunk: int) -> tuple[list[str], list[str]]:
    """The last `hunk` lines before the code and the first `hunk` after it."""
    shown_before = before.rstrip("\n").split("\n")[-hunk:] if before.strip() and hunk else []
    shown_after = after.strip("\n").split("\n")[:hunk] if after.strip() and hunk else []
    return shown_before, shown_after


class OutsideTheLines(ValueError):
    """The answer changes lines around the code, which a suggestion on the code cannot carry."""


def edit_within(answer: list[str], before: list[str], code: list[str], after: list[str]) -> list[str]:
    """The answer's lines for `code`, where the model answered for the whole block before + code +
    after: aligned line by line (ignoring indentation), every change must fall within the code."""
    def key(lines: list[str]) -> list[str]:
        return [line.strip() for line in lines]

    start, end = len(before), len(before) + len(code)
    opcodes = SequenceMatcher(None, key(before + code + after), key(answer), autojunk=False).get_opcodes()
    if any(tag != "equal" and (i1 < start or i2 > end) for tag, i1, i2, _, _ in opcodes):
        raise OutsideTheLines
    first = min(j1 + (start - i1) if tag == "equal" else j1
                for tag, i1, i2, j1, _ in opcodes if i1 <= start <= i2 and (tag == "equal" or i1 == start))
    last = max(j1 + (end - i1) if tag == "equal" else j2
               for tag, i1, i2, j1, j2 in opcodes if i1 <= end <= i2 and (tag == "equal" or i2 == end))
    return answer[first:last]


def revised_code(answer: str, original: str, before: str = "", after: str = "", hunk: int = 0) -> str:
    """The revised code in an answer, with the original's indentation ("" if none).

    `before` and `after` are the lines around the code. Shown apart from it (`hunk` 0), the model
    may repeat them at the edges of its answer, and they are dropped; shown as part of it (the
    last and first `hunk` of them), the answer is aligned with that block and only the code's
    lines are kept (`OutsideTheLines` if it changed others), since a suggestion replaces only the
    code itself."""
    shown_before, shown_after = context_lines(before, after, hunk)
    if shown_before or shown_after:
        lines = edit_within(extract_code(answer).strip("\n").split("\n"), shown_before,
                            original.strip("\n").split("\n"), shown_after)
        code = "\n".join(lines).strip("\n")
    else:
        code = drop_echoed_context(extract_code(answer).strip("\n"), original, before, after).strip("\n")
    if not code.strip():
        return ""
    code = reindent(code, original)
    return code + "\n" if original.endswith("\n") else code


def same_code(a: str, b: str) -> bool:
    """Equal up to whitespace runs: the comparison CodeReviewer's Exact Match makes."""
    return a.split() == b.split()


def parse_revision(answer: str, original: str, before: str = "", after: str = "",
                   hunk: int = 0) -> RevisionOutcome:
    """Parse an answer into a `Revision`; never raises on bad model output."""
    try:
        code = revised_code(answer, original, before, after, hunk)
    except OutsideTheLines:
        return NoRevision("the model changed lines around the commented ones, which a suggestion "
                          "on them cannot carry")
    if not code:
        return NoRevision("the model returned no code")
    if same_code(code, original):
        return NoRevision("the model returned the original code unchanged")
    return Revision(code)
