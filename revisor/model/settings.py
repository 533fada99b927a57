"""The model settings, defined once: every command that runs the model takes them as flags, and
each also reads its `REVISOR_*` variable (a flag wins over the variable, the variable over the
default). `revisor serve`, `worker` and `action` read the same ones."""

from __future__ import annotations

from typing import Literal, get_args, get_origin

import click
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from revisor.model.errors import RevisorError
from revisor.model.prompts import StrategyName

AUTO = "auto"
"""The prompt strategy that follows the model: the fine-tuned format for the default model and
for adapters (both are trained on it), zero-shot for any other model."""
ENV_PREFIX = "REVISOR_"
METAVARS = {"model": "MODEL", "adapter": "ADAPTER", "pool": "FILE", "shots": "N", "base_url": "URL",
            "api_key": "KEY", "calibration": "FILE", "min_confidence": "P", "samples": "K"}


class ModelSettings(BaseSettings):
    """Which model answers, how it is prompted, and how sure it must be to speak."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True,
                                      extra="ignore")

    engine: Literal["vllm", "openai", "transformers"] = Field(
        "vllm", description="vllm: vLLM in this process; openai: an OpenAI-compatible server such as "
                            "`vllm serve` (see base-url); transformers: in-process fallback without vLLM.")
    model: str | None = Field(
        None, description="A checkpoint directory or Hugging Face id. Default: `embedded`, "
                          "SmolLM2-135M-Instruct with Revisor's adapter merged in (`embedded-base`: "
                          "without it). With the openai engine: the served model name (default: the "
                          "server's first).")
    adapter: str | None = Field(
        None, description="A PEFT LoRA adapter directory, put on the plain embedded model unless "
                          "`model` names another; with the openai engine, the name of a LoRA module "
                          "the server was started with.")
    strategy: Literal["auto", StrategyName] = Field(
        AUTO, description="The prompt. auto: the fine-tuned format for the default model and for "
                          "adapters (what they were trained on, with retrieved pairs first for an "
                          "adapter trained so), zero-shot for other models; few-shot and "
                          "fine-tuned+retrieval need `pool`.")
    pool: str | None = Field(
        None, description="Review-to-revision pairs (.jsonl or .csv) that demonstrations are "
                          "retrieved from by BM25. Never a benchmark's test file.")
    shots: int | None = Field(
        None, ge=1, le=16, description="Retrieved pairs per prompt. Default: as many as the adapter "
                                       "was trained with (fine-tuned+retrieval), else 3.")
    persona: bool = Field(False, description="Open the prompt with an expert-developer persona line.")
    base_url: str | None = Field(
        None, description="The OpenAI-compatible server for the openai engine, e.g. "
                          "http://gpu-box:8000/v1; several replicas comma-separated take turns, and "
                          "one that fails is skipped.")
    api_key: str | None = Field(None, description="The API key for `base-url`, if it needs one.")
    calibration: str | None = Field(
        None, description="A calibration.json from `revisor calibrate`. Default: the one beside the "
                          "adapter, or the one shipped with the default model.")
    min_confidence: float | None = Field(
        None, ge=0, le=1, description="Post only suggestions at least this confident, 0 to 1. "
                                      "Default: the calibration's threshold; 0 without one.")
    samples: int | None = Field(
        None, ge=1, le=16, description="Answers per comment: the greedy one and K-1 sampled ones; the "
                                       "code most of them give is suggested, and how many agree counts "
                                       "in its confidence where the calibration weighs it. 1: the greedy "
                                       "answer alone. Default: as many as the calibration was fitted "
                                       "with (1 for the default model), else 1.")
    compile: bool = Field(False, description="vLLM: compile the model (minutes more at start, faster "
                                             "generation).")

    @field_validator("model", "adapter", "pool", "base_url", "api_key", "calibration")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value.strip() or None if isinstance(value, str) else value


FIELDS = ModelSettings.model_fields


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_var(name: str) -> str:
    return ENV_PREFIX + name.upper()


def shown_default(name: str) -> str:
    default = FIELDS[name].default
    return "unset" if default is None else str(default).lower() if isinstance(default, bool) else str(default)


def choices(name: str) -> tuple[str, ...]:
    annotation = FIELDS[name].annotation
    return get_args(annotation) if get_origin(annotation) is Literal else ()


def model_options(command=None, *, omit: tuple[str, ...] = (), several: tuple[str, ...] = ()):
    """Click options for every model setting but `omit`; those in `several` take comma-separated
    values to compare (`revisor bench`). Unset flags stay None, so the variable or default applies."""
    def decorate(command):
        for name in reversed([n for n in FIELDS if n not in omit]):
            help_text = FIELDS[name].description or ""
            if name in several:
                help_text += " Comma-separated to compare several in one run."
            help_text += f" [env: {env_var(name)}; default: {shown_default(name)}]"
            if FIELDS[name].annotation is bool:
                option = click.option(f"{flag(name)}/--no-{flag(name)[2:]}", name, default=None,
                                      help=help_text)
            else:
                kind = click.Choice(choices(name)) if choices(name) and name not in several else None
                option = click.option(flag(name), name, default=None, type=kind, help=help_text,
                                      metavar=METAVARS.get(name))
            command = option(command)
        return command

    return decorate(command) if command is not None else decorate


def model_settings(**given) -> ModelSettings:
    """The settings from the flags given (None: not given), the environment and the defaults; a
    bad value is one line naming its flag and variable."""
    try:
        return ModelSettings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as error:
        raise RevisorError(validation_message(error, lambda name: f"{flag(name)} / {env_var(name)}")) \
            from None


def validation_message(error: ValidationError, name_of) -> str:
    """pydantic's first complaint as one line: the setting's name, what is wrong, the value."""
    first = error.errors()[0]
    name = name_of(str(first["loc"][0])) if first["loc"] else "settings"
    message = first["msg"].removeprefix("Value error, ")
    value = first.get("input")
    return f"{name}: {message}" + ("" if isinstance(value, dict) or "e.g." in message else f", not {value!r}")

