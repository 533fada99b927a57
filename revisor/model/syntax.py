"""Does a suggestion break the code's syntax? tree-sitter parses the code before and after.

A reviewed hunk is a fragment (it starts and ends mid-function), so it may not parse on its own:
what counts is whether the revision has more error nodes than the original. A suggestion that adds
parse errors is almost never what the reviewer asked for (on the default adapter's dev split, none
of the 19 answers that did was exact), so it is held back. Languages without a grammar here pass.
"""

from __future__ import annotations

import functools
import importlib

from revisor.model.languages import normalize_language

GRAMMARS = {
    "python": ("tree_sitter_python", "language"),
    "java": ("tree_sitter_java", "language"),
    "go": ("tree_sitter_go", "language"),
    "javascript": ("tree_sitter_javascript", "language"),
    "c": ("tree_sitter_c", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
    "csharp": ("tree_sitter_c_sharp", "language"),
    "php": ("tree_sitter_php", "language_php"),
    "ruby": ("tree_sitter_ruby", "language"),
}
"""Each language's grammar package (on the package index, installed with Revisor) and the
function that returns its grammar."""


@functools.cache
def _parser(language: str):
    from tree_sitter import Language, Parser

    module, function = GRAMMARS[language]
    return Parser(Language(getattr(importlib.import_module(module), function)()))


def parse_errors(code: str, language: str) -> int | None:
    """How many error and missing nodes tree-sitter finds in `code`; None without a grammar."""
    language = normalize_language(language)
    if language not in GRAMMARS:
        return None
    pending, errors = [_parser(language).parse(code.encode()).root_node], 0
    while pending:
        node = pending.pop()
        errors += node.is_error or node.is_missing
        if node.has_error:  # only subtrees holding an error are walked
            pending.extend(node.children)
    return errors


def added_parse_errors(original: str, revised: str, language: str) -> int:
    """How many more parse errors the revision has than the original (0 for unknown languages)."""
    before, after = parse_errors(original, language), parse_errors(revised, language)
    return 0 if before is None or after is None else max(0, after - before)
