"""Configuration read from the environment (GitHub's credentials, the job store, the service) and
a repository's `RepoConfig` (`.github/revisor.yml` on the base branch); each bad value is one line
naming its variable or key. The model's settings are `revisor.model.settings.ModelSettings`."""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from revisor.model.embedded import revisor_home
from revisor.model.errors import RevisorError
from revisor.model.prompts import StrategyName
from revisor.model.settings import validation_message

GITHUB_API = "https://api.github.com"


def read_env(cls: type[BaseSettings]):
    """`cls()` from the environment, a bad value being one line that names its variable."""
    prefix = cls.model_config.get("env_prefix", "")
    try:
        return cls()
    except ValidationError as error:
        raise RevisorError(validation_message(error, lambda name: (prefix + name).upper())) from None


def env_config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, env_ignore_empty=True, frozen=True, extra="ignore")


class GitHubSettings(BaseSettings):
    """How Revisor reaches GitHub: a token, or a GitHub App's id and private key."""

    model_config = env_config("GITHUB_")

    api_url: str = Field(GITHUB_API, description="GitHub's REST API; for GitHub Enterprise Server, "
                                                 "https://HOST/api/v3.")
    app_id: str | None = Field(None, description="The GitHub App's id (its settings page).")
    app_private_key: SecretStr | None = Field(None, description="The App's private key, PEM text.")
    app_private_key_path: Path | None = Field(None, description="A file holding the App's private key, "
                                                                "instead of GITHUB_APP_PRIVATE_KEY.")
    token: SecretStr | None = Field(None, description="A token that can read the repository "
                                                      "(`revisor mine`, the Action), instead of an App.")
    webhook_secret: SecretStr | None = Field(
        None, description="The App's webhook secret, 16 characters or more: `revisor serve` refuses "
                          "unsigned deliveries.")

    @field_validator("api_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    def app_credentials(self) -> tuple[str, str] | None:
        """The App's id and private key, or None where either is unset."""
        key = self.app_private_key.get_secret_value() if self.app_private_key else None
        if not key and self.app_private_key_path:
            try:
                key = self.app_private_key_path.read_text()
            except OSError as error:
                raise RevisorError(f"GITHUB_APP_PRIVATE_KEY_PATH: cannot read ({error.strerror})") from None
        return (self.app_id, key) if self.app_id and key else None

    def require_app(self) -> tuple[str, str]:
        credentials = self.app_credentials()
        if credentials is None:
            raise RevisorError("set GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY (or "
                               "GITHUB_APP_PRIVATE_KEY_PATH) from the App's settings page")
        return credentials


def default_database() -> Path:
    return revisor_home() / "revisor.db"


class StoreSettings(BaseSettings):
    """Where jobs and posted suggestions are kept: `serve`, `worker`, `jobs`, `report` and
    `mine --from-jobs` all read the same store, from any directory."""

    model_config = env_config("REVISOR_")

    database: Path = Field(default_factory=default_database,
                           description="The SQLite job store. Default: $REVISOR_HOME/revisor.db "
                                       "(REVISOR_HOME defaults to ~/.cache/revisor).")
    redis_url: str | None = Field(None, description="Keep jobs in Redis instead, for workers on "
                                                    "several machines, e.g. redis://redis:6379/0.")

    def open(self):
        from revisor.bot.jobs import open_store

        if self.redis_url is None:
            self.database.expanduser().parent.mkdir(parents=True, exist_ok=True)
        return open_store(str(self.database.expanduser()), self.redis_url)


class ServiceSettings(BaseSettings):
    """The webhook service and its workers (`revisor serve`, `revisor worker`)."""

    model_config = env_config("REVISOR_")

    bot_name: str = Field("revisor", description="The name reviewers mention (`@revisor`).")
    max_payload_bytes: int = Field(10 * 2**20, gt=0, description="Larger deliveries are refused (413).")
    body_seconds: float = Field(10.0, gt=0, description="A delivery whose body has not all arrived this "
                                                        "long after its headers is refused (408).")
    max_connections: int = Field(200, gt=0, description="Connections to `revisor serve` beyond this many "
                                                        "at once are answered 503 at once.")
    keep_days: float = Field(30.0, gt=0, description="Deliveries that finished longer ago are forgotten "
                                                     "(GitHub sends one again within 3 days at most).")
    lease_seconds: float = Field(120.0, gt=0, description="A job whose worker stops renewing its lease "
                                                          "for this long is taken over by another.")
    adapters: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Comma-separated LoRA module names on the openai engine's server that a "
                        "repository may choose in .github/revisor.yml (`adapter:`).")

    @field_validator("adapters", mode="before")
    @classmethod
    def _comma_separated(cls, value):
        return tuple(a.strip() for a in value.split(",") if a.strip()) if isinstance(value, str) else value


def service_settings() -> tuple[ServiceSettings, GitHubSettings, StoreSettings]:
    """What `serve` and `worker` need, read and checked before anything starts."""
    github = read_env(GitHubSettings)
    secret = github.webhook_secret.get_secret_value() if github.webhook_secret else ""
    if len(secret) < 16:
        raise RevisorError("GITHUB_WEBHOOK_SECRET must be set to the App's webhook secret (16 "
                           "characters or more); Revisor refuses unsigned webhooks")
    github.require_app()
    return read_env(ServiceSettings), github, read_env(StoreSettings)


class RepoConfig(BaseModel):
    """What a repository may set in `.github/revisor.yml` (read from the base branch only)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    review_comments: Literal["mention", "all"] = Field(
        "mention", description="mention: answer only comments with `/revise` or `@revisor`; all: "
                               "every comment of an allowed author.")
    review_pull_requests: bool = Field(
        False, description="Post a review of its own when a pull request is opened, marked ready or "
                           "pushed to.")
    skip_drafts: bool = Field(True, description="Do not review draft pull requests of its own accord.")
    max_suggestions: int = Field(10, ge=0, description="Suggestions in one review, at most.")
    max_files: int = Field(20, ge=1, description="Files one review looks at, at most.")
    max_regions: int = Field(40, ge=1, description="Changed regions one review sends to the model, "
                                                   "at most.")
    include: tuple[str, ...] = Field(("**",), description="Glob patterns of the paths reviewed.")
    exclude: tuple[str, ...] = Field((), description="Glob patterns of paths never reviewed.")
    strategy: Literal["auto", StrategyName] | None = Field(
        None, description="A prompt strategy for this repository. Default: the service's "
                          "(REVISOR_STRATEGY).")
    adapter: str | None = Field(None, description="A LoRA adapter by name, from those the service "
                                                  "offers (REVISOR_ADAPTERS). Default: its model.")
    note_when_no_suggestion: bool = Field(
        False, description="Also say so when there is no suggestion for a comment that did not ask "
                           "Revisor by name (review_comments: all). One that asked always gets an "
                           "answer.")
    min_confidence: float | None = Field(
        None, ge=0, le=1, description="Post only suggestions at least this confident. Default: the "
                                      "service's threshold.")
    max_answers_per_pull_request: int = Field(
        50, ge=0, description="Revisor's replies and reviews on one pull request, at most; beyond, it "
                              "stays quiet there.")
    allowed_authors: tuple[str, ...] = Field(
        ("OWNER", "MEMBER", "COLLABORATOR"),
        description="Whose comments and pull requests Revisor acts on, by GitHub's "
                    "author_association: on a public repository anyone can comment, and every "
                    "answer costs model time.")

    @field_validator("min_confidence", mode="before")
    @classmethod
    def _a_number(cls, value):
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("include", "exclude", "allowed_authors", mode="before")
    @classmethod
    def _a_list(cls, value, info):
        if not isinstance(value, list):
            raise ValueError(f"must be a list, e.g. {info.field_name}: [{value!r}]")
        return tuple(value)

    @classmethod
    def parse(cls, text: str | None) -> RepoConfig:
        if not text:
            return cls()
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as error:
            raise RevisorError(f".github/revisor.yml is not valid YAML: {error}") from None
        if not isinstance(data, dict):
            raise RevisorError(".github/revisor.yml must be a mapping of settings")
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            first = error.errors()[0]
            if first["type"] == "extra_forbidden":
                raise RevisorError(f".github/revisor.yml: unknown setting {first['loc'][0]}") from None
            raise RevisorError(".github/revisor.yml: " + validation_message(error, str)) from None

    def wants(self, path: str) -> bool:
        return any(fnmatch(path, p) for p in self.include) and not any(fnmatch(path, p) for p in self.exclude)
