"""Unified diffs (via unidiff) to the regions of new-side code that Revisor revises, and lines
followed from one version of a file to the next (difflib)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from difflib import SequenceMatcher

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

from revisor.model.errors import DiffError
from revisor.model.languages import language_of_path
from revisor.model.prompts import inline_code
from revisor.model.schema import RevisionTask


@dataclass(frozen=True)
class Region:
    """Lines `start`..`end` (inclusive, 1-based) of the new side of `path`."""

    path: str
    start: int
    end: int
    code: str
    before: str = ""
    after: str = ""
    """New-side lines of the same hunk around the region, for the model's reference."""

    def task(self, comment: str = "") -> RevisionTask:
        return RevisionTask(self.code, comment, language_of_path(self.path), self.before, self.after)

    @property
    def location(self) -> str:
        return f"{self.path}:{self.start}" + (f"-{self.end}" if self.end != self.start else "")


@dataclass(frozen=True)
class Diff:
    patch: PatchSet

    def filtered(self, keep: Callable[[str], bool]) -> Diff:
        """The files whose path `keep` accepts."""
        patch = PatchSet("")
        patch.extend(f for f in self.patch if keep(f.path))
        return Diff(patch)

    @property
    def binary_files(self) -> list[str]:
        return [f.path for f in self.patch if f.is_binary_file]

    def changed_regions(self, max_lines: int = 30) -> list[Region]:
        """Every run of consecutive added lines, per file, in diff order; runs longer than
        `max_lines` are split, at a blank line where there is one."""
        regions = []
        for patched in self.patch:
            if patched.is_binary_file or patched.is_removed_file:
                continue
            for hunk in patched:
                run: list = []
                for line in [*hunk, None]:
                    if line is not None and line.is_added:
                        run.append(line)
                    elif run:
                        chunks = [_trimmed(c) for c in _chunks(run, max_lines)]
                        regions.extend(_region(patched.path, c) for c in chunks if c)
                        run = []
        return regions

    def region_at(self, path: str, start: int, end: int, context: int = 0) -> Region:
        """The new-side lines `start`..`end` of `path`, which must lie in one hunk of the diff,
        with up to `context` lines of that hunk before and after them."""
        files = [f for f in self.patch if f.path == path]
        if not files:
            raise DiffError(f"{inline_code(path)} is not in the diff")
        for hunk in files[0]:
            lines = {ln.target_line_no: ln for ln in hunk if ln.target_line_no is not None}
            if all(n in lines for n in range(start, end + 1)):
                region = _region(path, [lines[n] for n in range(start, end + 1)])
                before = [lines[n] for n in range(start - context, start) if n in lines]
                after = [lines[n] for n in range(end + 1, end + 1 + context) if n in lines]
                return replace(region, before="".join(ln.value for ln in before),
                               after="".join(ln.value for ln in after))
        raise DiffError(
            f"{inline_code(f'{path}:{start}-{end}')} is not within one hunk of the new side: comment on "
            "changed or context lines that the diff shows"
        )


def _chunks(lines: list, max_lines: int) -> list[list]:
    chunks = []
    while len(lines) > max_lines:
        blanks = [i for i, line in enumerate(lines[1:max_lines], start=1) if not line.value.strip()]
        cut = blanks[-1] + 1 if blanks else max_lines
        chunks.append(lines[:cut])
        lines = lines[cut:]
    return [*chunks, lines] if lines else chunks


def _trimmed(lines: list) -> list:
    """Without blank lines at either end."""
    filled = [i for i, line in enumerate(lines) if line.value.strip()]
    return lines[filled[0] : filled[-1] + 1] if filled else []


def _region(path: str, lines: list) -> Region:
    code = "".join(line.value for line in lines)
    return Region(path, lines[0].target_line_no, lines[-1].target_line_no, code)


def parse_diff(text: str) -> Diff:
    if not text.strip():
        raise DiffError("the diff is empty: pipe `git diff` into revisor, or pass --diff FILE")
    try:
        patch = PatchSet(text)
    except UnidiffParseError as error:
        raise DiffError(f"not a unified diff ({error}): pass the output of `git diff`") from None
    if not len(patch):
        raise DiffError("no file changes found: pass the output of `git diff` (a unified diff)")
    return Diff(patch)


Opcodes = list[tuple[str, int, int, int, int]]


CONTEXT_LINES = 3
"""Lines around the commented ones in a mined pair, as in CodeReviewer's hunks."""


def copies(lines: list[str], block: list[str]) -> int:
    """How many times `block` stands, whole and in order, in `lines`."""
    return sum(lines[i:i + len(block)] == block for i in range(len(lines) - len(block) + 1))


def line_opcodes(old: list[str], new: list[str]) -> Opcodes:
    return SequenceMatcher(None, old, new, autojunk=False).get_opcodes()


def touched(ops: Opcodes, start: int, end: int) -> bool:
    """Whether a change replaces or deletes one of lines [start, end), or inserts lines among them
    or right beside them ("add a check after this")."""
    return any(tag != "equal" and (i1 < end and i2 > start if i1 < i2 else start <= i1 <= end)
               for tag, i1, i2, _, _ in ops)


def kept(ops: Opcodes, start: int, end: int) -> tuple[int, int] | None:
    """Where lines [start, end) of the old text are in the new, if the diff kept both ends as they
    were (lines added beside them stay outside); None if it changed either."""
    place = {i: j1 + i - i1 for tag, i1, i2, j1, _ in ops if tag == "equal" for i in (start, end - 1)
             if i1 <= i < i2}
    return (place[start], place[end - 1] + 1) if start in place and end - 1 in place else None


def follow(ops: Opcodes, start: int, end: int) -> tuple[int, int]:
    """Where lines [start, end) of the old text are in the new. A boundary inside a changed block
    widens to the whole block, so the span keeps every line a change touched."""
    def position(at: int, first: bool) -> int:
        found = [j1 + at - i1 if tag == "equal" else (j1 if first else j2)
                 for tag, i1, i2, j1, j2 in ops if i1 <= at <= i2]
        return min(found) if first else max(found)

    return position(start, True), position(end, False)


def with_context(start: int, end: int, length: int) -> tuple[int, int]:
    """Lines [start, end) and `CONTEXT_LINES` each side, within a text of `length` lines."""
    return max(0, start - CONTEXT_LINES), min(length, end + CONTEXT_LINES)


def pair_texts(before: list[str], after: list[str], start: int, end: int) -> tuple[str, str]:
    """Lines [start, end) of `before` and what `after` made of them, as a CodeReviewer hunk: the
    whole of every change that rewrote or deleted some of them, with `CONTEXT_LINES` around, on
    each side in its own text."""
    ops = line_opcodes(before, after)
    for tag, i1, i2, _, _ in ops:
        if tag != "equal" and i1 < i2 and i1 < end and i2 > start:
            start, end = min(start, i1), max(end, i2)
    old_low, old_high = with_context(start, end, len(before))
    new_low, new_high = with_context(*follow(ops, start, end), len(after))
    return ("\n".join(before[old_low:old_high]).strip("\n"), "\n".join(after[new_low:new_high]).strip("\n"))


def moved_elsewhere(before: list[str], after: list[str], ops: Opcodes, start: int, end: int) -> bool:
    """Whether lines [start, end) of `before` left their place but stand, unchanged (trailing
    spaces aside), elsewhere in `after`: cut and pasted."""
    block = [line.rstrip() for line in before[start:end]]
    if not any(block):
        return False
    low, high = follow(ops, start, end)
    now, later, earlier = ([line.rstrip() for line in lines] for lines in (after[low:high], after, before))
    return not copies(now, block) and copies(later, block) >= copies(earlier, block)
