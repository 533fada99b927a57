"""The in-process transformers engine: the fallback, with adapters through peft.

Requests are grouped by temperature and seed, sorted by length and generated in left-padded
batches; bf16 where the CPU (or GPU) supports it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from revisor.model.engines.base import (
    ChatRequest,
    Completion,
    EngineConfig,
    Step,
    local_dtype,
    truncate_at_stop,
)
from revisor.model.engines.vllm_local import describe


class TransformersEngine:
    def __init__(self, config: EngineConfig):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(config.model, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = getattr(torch, local_dtype(config.dtype))
        model = AutoModelForCausalLM.from_pretrained(config.model, dtype=dtype)
        if config.adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, config.adapter)
        torch.manual_seed(config.seed)
        self.model = model.eval()
        self._busy = threading.Lock()

    @property
    def description(self) -> str:
        return describe(self.config)

    def prompt_ids(self, request: ChatRequest) -> list[int]:
        continues = request.continues_final_message
        return self.tokenizer.apply_chat_template(
            request.messages,
            add_generation_prompt=not continues,
            continue_final_message=continues,
            tokenize=True,
            return_dict=False,
        )

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        with self._busy:  # one generation at a time on the one model
            return self._generate(requests)

    def _generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        prompts = [self.prompt_ids(r) for r in requests]
        results: dict[int, Completion] = {}
        size = self.config.batch_size
        groups: dict[tuple[float, int], list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault((request.temperature, request.seed if request.temperature else 0), []).append(i)
        for group in groups.values():
            order = sorted(group, key=lambda i: len(prompts[i]))
            for start in range(0, len(order), size):
                batch = order[start : start + size]
                completions = self._generate_batch([prompts[i] for i in batch], [requests[i] for i in batch])
                results.update(zip(batch, completions, strict=True))
        return [results[i] for i in range(len(requests))]

    def _generate_batch(self, prompts: list[list[int]], requests: list[ChatRequest]):
        torch = self._torch
        padded = self.tokenizer.pad({"input_ids": prompts}, return_tensors="pt")
        stop = sorted({s for r in requests for s in r.stop})
        temperature = requests[0].temperature  # one per batch (`_generate`)
        sampling: dict = {"do_sample": False}
        if temperature:  # plain sampling, as vLLM's: no top-k or top-p
            sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
            torch.manual_seed(requests[0].seed)
        with torch.inference_mode():
            output = self.model.generate(
                **padded,
                max_new_tokens=max(r.max_tokens for r in requests),
                **sampling,
                stop_strings=stop or None,
                tokenizer=self.tokenizer,
                pad_token_id=self.tokenizer.pad_token_id,
                output_logits=True,
                return_dict_in_generate=True,
            )
        width = padded["input_ids"].shape[1]
        # Log-probabilities from the raw logits, before any temperature, as vLLM reports them.
        steps = torch.stack(output.logits, dim=1).float().log_softmax(dim=-1)
        completions = []
        rows = zip(prompts, output.sequences, requests, strict=True)
        for row, (prompt, ids_row, request) in enumerate(rows):
            ids = ids_row[width:].tolist()[: request.max_tokens]
            ids = _until_end(ids, {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id})
            text = truncate_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), request.stop)
            completions.append(Completion(text, len(prompt), len(ids), tuple(
                self._step(token, steps[row, i], request.alternatives) for i, token in enumerate(ids))))
        return completions

    def _step(self, token: int, logprobs, alternatives: int) -> Step:
        """A step from one position's log-probabilities: the token and the likeliest others."""
        values, ids = logprobs.topk(alternatives + 1)
        others = [(self.tokenizer.decode([other]), value) for other, value in
                  zip(ids.tolist(), values.tolist(), strict=True) if other != token]
        return Step(self.tokenizer.decode([token]), logprobs[token].item(), tuple(others[:alternatives]))

    def close(self) -> None:
        del self.model


def _until_end(ids: list[int], end_tokens: set[int | None]) -> list[int]:
    for position, token in enumerate(ids):
        if token in end_tokens:
            return ids[:position]
    return ids
