"""The engine interface and the settings every engine is built from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from revisor.model.prompts import Message


@dataclass(frozen=True)
class ChatRequest:
    """One chat to complete, greedily unless a temperature is given. A final assistant message is
    continued, not answered."""

    messages: list[Message]
    max_tokens: int
    stop: tuple[str, ...] = ()
    alternatives: int = 0
    """How many of the likeliest other tokens to report at each step (`Step.alternatives`)."""
    temperature: float = 0.0
    """Above 0: sample the answer at this temperature; the same `seed` gives the same answer."""
    seed: int = 0

    @property
    def continues_final_message(self) -> bool:
        return bool(self.messages) and self.messages[-1]["role"] == "assistant"


@dataclass(frozen=True)
class Step:
    """One generated token, its log-probability, and the likeliest tokens it was chosen over."""

    token: str
    logprob: float
    alternatives: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    output_tokens: int
    steps: tuple[Step, ...] = ()
    """Every generated token, the one that ended generation included where the engine reports it."""

    @property
    def token_logprobs(self) -> tuple[float, ...]:
        """Log-probabilities of the tokens that make up `text` (see `logprobs_within`)."""
        return logprobs_within(self.text, [(step.token, step.logprob) for step in self.steps])


@dataclass(frozen=True)
class EngineConfig:
    """What every engine needs; each uses the fields that apply to it.

    `model` is a local checkpoint path or Hugging Face id for in-process engines and the
    served model name for the `openai` engine; `adapter` is a PEFT adapter directory
    (in-process) or a LoRA module name on the server (`openai`).
    """

    model: str
    adapter: str | None = None
    base_url: str | None = None
    api_key: str = "EMPTY"
    dtype: str = "auto"
    max_model_len: int = 4096
    concurrency: int = 8
    timeout_s: float = 120.0
    retries: int = 3
    batch_size: int = 8
    prefix_caching: bool = True
    compile: bool = True
    seed: int = 0


class Engine(Protocol):
    @property
    def description(self) -> str:
        """The model (and adapter) behind this engine, as shown to users."""
        ...

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """Complete every request, in order."""
        ...

    def close(self) -> None: ...


def local_dtype(requested: str) -> str:
    """The dtype of an in-process engine: as requested, else what this machine computes fast:
    bf16 (fp16 on GPUs without it) on a GPU, bf16 on a CPU with AVX-512 BF16 or AMX, fp32 on other
    CPUs, where bf16 is emulated (on a 2-core AVX2 EPYC, `revisor calibrate` ran 7.9 s a record in
    bf16 against 2.0 s in fp32)."""
    if requested not in ("auto", ""):
        return requested
    import torch

    if torch.cuda.is_available():
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "float32"


def logprobs_within(text: str, tokens: Sequence[tuple[str, float]]) -> tuple[float, ...]:
    """The log-probabilities of the generated tokens that begin inside `text`.

    Engines differ in whether they report the token that ends generation (a stop string, the end
    of the turn); counting only tokens that start within the returned text makes every engine
    give the same list for the same answer.
    """
    kept, offset = [], 0
    for token, logprob in tokens:
        if offset >= len(text):
            break
        kept.append(logprob)
        offset += len(token)
    return tuple(kept)


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    cut = min((i for s in stop if (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]
