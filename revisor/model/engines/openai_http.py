"""An OpenAI-compatible server, above all `vllm serve` on a GPU box, or several replicas of it.

Requests run concurrently (bounded by `concurrency` per replica), each with a timeout. With one
server, failed requests are retried with backoff (the openai client's own); with several
(`base_url` "http://a:8000/v1,http://b:8000/v1"), requests take turns across them and a request
whose server fails moves on to the next one, while the failed server is tried last for a while.
A prefilled assistant turn is continued through vLLM's `continue_final_message` extension.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Sequence

from revisor.model.engines.base import ChatRequest, Completion, EngineConfig, Step
from revisor.model.errors import EngineUnavailableError, ModelServerUnreachable

log = logging.getLogger("revisor.engine")
COOL_DOWN_S = 30.0


def replica_urls(base_url: str | None) -> list[str]:
    return [url.strip() for url in (base_url or "").split(",") if url.strip()]


class OpenAIEngine:
    def __init__(self, config: EngineConfig):
        self.urls = replica_urls(config.base_url)
        if not self.urls:
            raise EngineUnavailableError(
                "the openai engine needs --base-url, e.g. http://gpu-box:8000/v1"
            )
        self.config = config
        # Empty: the server's first model, as listed by /v1/models.
        self._served_model = config.adapter or config.model
        self._turns = itertools.count()
        self._failed_at = [float("-inf")] * len(self.urls)

    @property
    def description(self) -> str:
        return self._served_model or "the served model"  # never the URL: it may hold credentials

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        return asyncio.run(self._generate_all(requests))

    def _replica_order(self) -> list[int]:
        """Round robin, with replicas that failed in the last COOL_DOWN_S seconds put last."""
        first = next(self._turns) % len(self.urls)
        order = [(first + i) % len(self.urls) for i in range(len(self.urls))]
        recent = time.monotonic() - COOL_DOWN_S
        return sorted(order, key=lambda i: self._failed_at[i] > recent)

    async def _generate_all(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        import openai

        retries = self.config.retries if len(self.urls) == 1 else 0
        # An empty key (the Action's `api-key` input unset) is "no key", which the client refuses.
        clients = [openai.AsyncOpenAI(base_url=url, api_key=self.config.api_key or "EMPTY",
                                      timeout=self.config.timeout_s, max_retries=retries)
                   for url in self.urls]
        slots = asyncio.Semaphore(self.config.concurrency * len(self.urls))
        replica_failures = (openai.APIConnectionError, openai.InternalServerError, openai.RateLimitError)

        async def ask(client: openai.AsyncOpenAI, request: ChatRequest) -> Completion:
            response = await client.chat.completions.create(
                model=self._served_model,
                messages=request.messages,  # type: ignore[arg-type]
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                stop=list(request.stop) or None,
                seed=request.seed,
                logprobs=True,
                top_logprobs=request.alternatives and request.alternatives + 1 or None,  # the chosen one too
                extra_body=_continuation(request),
            )
            usage, choice = response.usage, response.choices[0]
            content = choice.logprobs.content if choice.logprobs and choice.logprobs.content else []
            steps = tuple(Step(step.token, step.logprob, tuple(
                (other.token, other.logprob) for other in step.top_logprobs or [] if other.token != step.token
            )[: request.alternatives]) for step in content)
            return Completion(choice.message.content or "", usage.prompt_tokens if usage else 0,
                              usage.completion_tokens if usage else 0, steps)

        async def on_some_replica(call):
            failures = []
            for i in self._replica_order():
                try:
                    return await call(clients[i])
                except replica_failures as error:
                    self._failed_at[i] = time.monotonic()
                    failures.append(f"{self.urls[i]}: {error}")
                    if len(self.urls) > 1:
                        log.warning("model server %s failed (%s); trying another", self.urls[i], error)
            raise ModelServerUnreachable(
                f"cannot reach the model server at {'; '.join(failures)}: "
                "start `vllm serve` there or fix --base-url")

        async def one(request: ChatRequest) -> Completion:
            async with slots:
                return await on_some_replica(lambda client: ask(client, request))

        async def first_served_model(client: openai.AsyncOpenAI) -> str:
            return (await client.models.list()).data[0].id

        try:
            if not self._served_model:
                self._served_model = await on_some_replica(first_served_model)
            return list(await asyncio.gather(*(one(r) for r in requests)))
        except openai.NotFoundError as error:
            raise EngineUnavailableError(
                f"the server at {self.config.base_url} does not serve {self._served_model!r}: "
                "pass --model (or --adapter) with a name from its /v1/models"
            ) from error
        finally:
            await asyncio.gather(*(client.close() for client in clients))

    def close(self) -> None:
        pass


def _continuation(request: ChatRequest) -> dict[str, bool]:
    if request.continues_final_message:
        return {"continue_final_message": True, "add_generation_prompt": False}
    return {}
