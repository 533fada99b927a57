"""An OpenAI-compatible server, above all `vllm serve` on a GPU box.

Requests run concurrently (bounded by `concurrency`), each with a timeout and retries with
backoff (the openai client's own). A prefilled assistant turn is continued through vLLM's
`continue_final_message` extension.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from model.engines.base import ChatRequest, Completion, EngineConfig
from model.errors import EngineUnavailableError


class OpenAIEngine:
    def __init__(self, config: EngineConfig):
        if not config.base_url:
            raise EngineUnavailableError(
                "the openai engine needs --base-url, e.g. http://gpu-box:8000/v1"
            )
        self.config = config
        # Empty: the server's first model, as listed by /v1/models.
        self._served_model = config.adapter or config.model

    @property
    def description(self) -> str:
        return f"{self._served_model or 'model'} at {self.config.base_url}"

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        return asyncio.run(self._generate_all(requests))

    async def _generate_all(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        import openai

        client = openai.AsyncOpenAI(
            base_url=self.config.base_url,
            api_key=self.config.api_key,
            timeout=self.config.timeout_s,
            max_retries=self.config.retries,
        )
        slots = asyncio.Semaphore(self.config.concurrency)

        async def one(request: ChatRequest) -> Completion:
            async with slots:
                response = await client.chat.completions.create(
                    model=self._served_model,
                    messages=request.messages,  # type: ignore[arg-type]
                    max_tokens=request.max_tokens,
                    temperature=0.0,
                    stop=list(request.stop) or None,
                    seed=self.config.seed,
                    extra_body=_continuation(request),
                )
            usage = response.usage
            return Completion(
                response.choices[0].message.content or "",
                usage.prompt_tokens if usage else 0,
                usage.completion_tokens if usage else 0,
            )

        try:
            async with client:
                if not self._served_model:
                    self._served_model = (await client.models.list()).data[0].id
                return list(await asyncio.gather(*(one(r) for r in requests)))
        except openai.APIConnectionError as error:
            raise EngineUnavailableError(
                f"cannot reach the model server at {self.config.base_url} ({error}): "
                "start `vllm serve` there or fix --base-url"
            ) from error
        except openai.NotFoundError as error:
            raise EngineUnavailableError(
                f"the server at {self.config.base_url} does not serve {self._served_model!r}: "
                "pass --model (or --adapter) with a name from its /v1/models"
            ) from error

    def close(self) -> None:
        pass


def _continuation(request: ChatRequest) -> dict[str, bool]:
    if request.continues_final_message:
        return {"continue_final_message": True, "add_generation_prompt": False}
    return {}
