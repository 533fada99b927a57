"""PEFT adapter directories: what they hold, and whether they fit a base model."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from revisor.model.errors import RevisorError

METADATA = "revisor_train.json"
"""What `revisor train` writes beside an adapter: its data, settings and scores."""


def adapter_config(directory: str) -> dict:
    path = Path(directory) / "adapter_config.json"
    if not path.is_file():
        raise RevisorError(f"{directory} is not a PEFT adapter directory (no adapter_config.json)")
    return json.loads(path.read_text())


def check_adapter(directory: str, base_model: str) -> dict:
    """The adapter's config, once it is known to be trained for `base_model` (compared by name)."""
    config = adapter_config(directory)
    trained_on = config.get("base_model_name_or_path") or ""
    if trained_on and PurePosixPath(trained_on).name != PurePosixPath(base_model.rstrip("/")).name:
        raise RevisorError(
            f"{directory} was trained for {trained_on}, not {base_model}: pass --model {trained_on}")
    return config


def trained_shots(directory: str | Path) -> int:
    """How many retrieved pairs the adapter's prompts had in training (0: none, or unknown)."""
    path = Path(directory) / METADATA
    return json.loads(path.read_text()).get("shots", 0) if path.is_file() else 0
