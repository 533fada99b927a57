"""The in-process vLLM engine (the default): greedy decoding, LoRA adapters via LoRARequest."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

from revisor.model.adapters import adapter_config
from revisor.model.embedded import revisor_home
from revisor.model.engines.base import ChatRequest, Completion, EngineConfig, Step, local_dtype
from revisor.model.errors import EngineUnavailableError
from revisor.model.logs import child_output_to

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The values vLLM accepts for max_lora_rank."""

CPU_SETTINGS = {
    "VLLM_CPU_KVCACHE_SPACE": "2",
    "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
}
"""vLLM's settings for an in-process engine on a CPU, unless the environment sets them: a 2 GiB KV
cache (vLLM's default takes most of the memory, and allocating it takes seconds), and the model on
every core: by default vLLM keeps a core for its scheduler process, which on a 2-core machine left
the model one (docs/benchmark.md, "Speed on a CPU"). vLLM's engine stays in a process of its own:
run in this one (`VLLM_ENABLE_V1_MULTIPROCESSING=0`) it starts faster, but a second engine in the
same process then failed in vLLM 0.32's kernel registration."""


class VLLMEngine:
    def __init__(self, config: EngineConfig):
        try:
            from vllm import LLM
            from vllm.platforms import current_platform
        except ImportError as error:
            raise EngineUnavailableError(
                f"vLLM is not installed ({error}): run `make setup`, or use --engine transformers"
            ) from error
        cpu = current_platform.is_cpu()
        if cpu:
            for name, value in CPU_SETTINGS.items():
                os.environ.setdefault(name, value)
        self.config = config
        max_lora_rank = VLLM_LORA_RANKS[0]
        if config.adapter is not None:
            adapter = adapter_config(config.adapter)
            if adapter.get("use_dora"):
                raise EngineUnavailableError(
                    f"{config.adapter} is a DoRA adapter, which vLLM cannot serve: use --engine "
                    "transformers, or train with --method lora")
            max_lora_rank = next(r for r in VLLM_LORA_RANKS if r >= adapter.get("r", 0))
        log = revisor_home() / "logs" / "vllm-engine.log"
        loading_bar = os.environ.get("VLLM_LOGGING_LEVEL", "INFO").upper() in ("DEBUG", "INFO")
        try:
            with child_output_to(log):
                self._llm = LLM(
                    model=config.model,
                    dtype=local_dtype(config.dtype),
                    max_model_len=config.max_model_len,
                    enable_prefix_caching=config.prefix_caching,
                    enforce_eager=not config.compile,
                    enable_lora=config.adapter is not None,
                    max_lora_rank=max_lora_rank,
                    seed=config.seed,
                    # On a CPU, vLLM cannot rewind a seeded sampler after prefilling part of a prompt
                    # ("CPU Generator does not use offset"): prompts are prefilled whole there.
                    enable_chunked_prefill=not cpu,
                    use_tqdm_on_load=loading_bar,  # only where its logs show too (`revisor --verbose`)
                )
        except RuntimeError as error:
            raise EngineUnavailableError(f"vLLM's engine did not start ({error}): see {log}, or run "
                                         "with --verbose") from error
        self._busy = threading.Lock()
        self._lora = None
        if config.adapter is not None:
            from vllm.lora.request import LoRARequest

            self._lora = LoRARequest("adapter", 1, config.adapter)

    @property
    def description(self) -> str:
        return describe(self.config)

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        with self._busy:  # vLLM's LLM is not safe to call from several threads at once
            return self._generate(requests)

    def _generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        results: list[Completion | None] = [None] * len(requests)
        for continues in (True, False):
            indices = [i for i, r in enumerate(requests) if r.continues_final_message == continues]
            if not indices:
                continue
            outputs = self._llm.chat(
                [requests[i].messages for i in indices],
                [_sampling(requests[i]) for i in indices],
                use_tqdm=False,
                lora_request=self._lora,
                add_generation_prompt=not continues,
                continue_final_message=continues,
            )
            for i, output in zip(indices, outputs, strict=True):
                best = output.outputs[0]
                steps = tuple(_step(token, ranked)
                              for token, ranked in zip(best.token_ids, best.logprobs or [], strict=False))
                results[i] = Completion(best.text, len(output.prompt_token_ids), len(best.token_ids), steps)
        return [r for r in results if r is not None]

    def reset_prefix_cache(self) -> None:
        self._llm.reset_prefix_cache()

    def close(self) -> None:
        """Stop vLLM's engine process now: left to the garbage collector, it can outlive this one."""
        llm = self.__dict__.pop("_llm", None)
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()


def _sampling(request: ChatRequest):
    from vllm import SamplingParams

    # The log-probability of each sampled token (for the answer's confidence) and, where asked, of
    # the likeliest ones, which include the sampled one when decoding greedily. vLLM reports the
    # model's own log-probabilities, before the temperature.
    return SamplingParams(temperature=request.temperature, seed=request.seed, max_tokens=request.max_tokens,
                          stop=list(request.stop), logprobs=request.alternatives and request.alternatives + 1)


def _step(token: int, ranked: dict) -> Step:
    """A step from vLLM's logprobs: the sampled token and the others it reports."""
    others = sorted((entry for other, entry in ranked.items() if other != token), key=lambda e: e.rank)
    return Step(ranked[token].decoded_token or "", ranked[token].logprob,
                tuple((entry.decoded_token or "", entry.logprob) for entry in others))


def describe(config: EngineConfig) -> str:
    name = os.path.basename(config.model.rstrip("/")) or config.model
    return f"{name} + adapter {os.path.basename(config.adapter)}" if config.adapter else name
