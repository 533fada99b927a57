"""Language names: dataset codes and file extensions to the names used in code fences."""

from pathlib import PurePosixPath

_ALIASES = {
    "py": "python", "python": "python",
    "js": "javascript", "jsx": "javascript", "javascript": "javascript", "mjs": "javascript",
    "ts": "typescript", "tsx": "typescript", "typescript": "typescript",
    "java": "java", "go": "go", "c": "c", "h": "c",
    "cpp": "cpp", "cc": "cpp", "cxx": "cpp", "hpp": "cpp", "hh": "cpp", "c++": "cpp",
    "cs": "csharp", ".cs": "csharp", "csharp": "csharp", "c#": "csharp",
    "rb": "ruby", "ruby": "ruby", "php": "php", "rs": "rust", "rust": "rust",
    "kt": "kotlin", "kotlin": "kotlin", "scala": "scala", "swift": "swift",
    "r": "r", "sh": "bash", "bash": "bash", "sql": "sql", "yaml": "yaml", "yml": "yaml",
}


def normalize_language(name: str) -> str:
    """Map a dataset code ("py", ".cs") or a language name to its code-fence name."""
    key = name.strip().lower()
    return _ALIASES.get(key, key)


def language_of_path(path: str) -> str:
    """Guess a file's language from its extension ("" when unknown)."""
    suffix = PurePosixPath(path).suffix.lstrip(".")
    return _ALIASES.get(suffix.lower(), "") if suffix else ""
