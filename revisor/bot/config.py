"""Configuration: the service's `Settings` (environment) and a repository's `RepoConfig`
(`.github/revisor.yml` on the base branch, allowlisted keys only)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import yaml

from revisor.model.compose import AUTO, DEFAULT_POOL
from revisor.model.errors import RevisorError
from revisor.model.prompts import STRATEGIES


def confidence_setting(name: str, value) -> float | None:
    """A threshold in [0, 1] from the environment or .github/revisor.yml; None when unset."""
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if isinstance(value, bool) or not 0.0 <= number <= 1.0:
        raise RevisorError(f"{name} must be a number from 0 to 1, not {value!r}")
    return number


@dataclass(frozen=True)
class ModelSettings:
    """What `revisor review` takes on its command line, from REVISOR_* variables."""

    engine: str = "vllm"
    model: str | None = None
    adapter: str | None = None
    base_url: str | None = None
    api_key: str = "EMPTY"
    strategy: str = AUTO
    pool: str = DEFAULT_POOL
    calibration: str | None = None
    min_confidence: float | None = None
    """Below it no suggestion is posted; None: the calibration's threshold."""
    adapters: tuple[str, ...] = ()
    """LoRA module names on the `openai` engine's server that repositories may choose."""

    @classmethod
    def from_env(cls, env: dict[str, str]) -> ModelSettings:
        return cls(
            engine=env.get("REVISOR_ENGINE", "vllm"),
            model=env.get("REVISOR_MODEL") or None,
            adapter=env.get("REVISOR_ADAPTER") or None,
            base_url=env.get("REVISOR_BASE_URL") or None,
            api_key=env.get("REVISOR_API_KEY", "EMPTY"),
            strategy=env.get("REVISOR_STRATEGY") or AUTO,
            pool=env.get("REVISOR_POOL", cls.pool),
            calibration=env.get("REVISOR_CALIBRATION") or None,
            min_confidence=confidence_setting("REVISOR_MIN_CONFIDENCE", env.get("REVISOR_MIN_CONFIDENCE")),
            adapters=tuple(a.strip() for a in env.get("REVISOR_ADAPTERS", "").split(",") if a.strip()),
        )


def app_credentials(env: dict[str, str]) -> tuple[str, str] | None:
    """The App's id and private key from the environment, or None where either is unset."""
    key = env.get("GITHUB_APP_PRIVATE_KEY")
    if not key and env.get("GITHUB_APP_PRIVATE_KEY_PATH"):
        try:
            key = Path(env["GITHUB_APP_PRIVATE_KEY_PATH"]).read_text()
        except OSError as error:
            raise RevisorError(f"GITHUB_APP_PRIVATE_KEY_PATH: cannot read ({error.strerror})") from None
    return (env["GITHUB_APP_ID"], key) if env.get("GITHUB_APP_ID") and key else None


@dataclass(frozen=True)
class Settings:
    webhook_secret: str
    app_id: str | None = None
    private_key: str | None = None
    api_url: str = "https://api.github.com"
    database: str = "revisor.db"
    redis_url: str | None = None
    """Jobs in Redis (workers on several machines) instead of the SQLite `database` file."""
    bot_name: str = "revisor"
    max_payload_bytes: int = 10 * 2**20
    lease_seconds: float = 120.0
    model: ModelSettings = field(default_factory=ModelSettings)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        secret = env.get("GITHUB_WEBHOOK_SECRET", "")
        if len(secret) < 16:
            raise RevisorError("GITHUB_WEBHOOK_SECRET must be set to the App's webhook secret "
                               "(16 characters or more); Revisor refuses unsigned webhooks")
        credentials = app_credentials(env)
        if credentials is None:
            raise RevisorError("set GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY (or "
                               "GITHUB_APP_PRIVATE_KEY_PATH) from the App's settings page")
        return cls(
            webhook_secret=secret,
            app_id=credentials[0],
            private_key=credentials[1],
            api_url=env.get("GITHUB_API_URL", "https://api.github.com").rstrip("/"),
            database=env.get("REVISOR_DATABASE", "revisor.db"),
            redis_url=env.get("REVISOR_REDIS_URL") or None,
            bot_name=env.get("REVISOR_BOT_NAME", "revisor"),
            max_payload_bytes=int(env.get("REVISOR_MAX_PAYLOAD_BYTES", 10 * 2**20)),
            lease_seconds=float(env.get("REVISOR_LEASE_SECONDS", 120)),
            model=ModelSettings.from_env(env),
        )

    def __repr__(self) -> str:  # secrets never reach logs
        queue = "redis" if self.redis_url else self.database
        return f"Settings(app_id={self.app_id!r}, api_url={self.api_url!r}, jobs={queue!r})"


@dataclass(frozen=True)
class RepoConfig:
    """What a repository may set in `.github/revisor.yml` (read from the base branch only)."""

    review_comments: str = "mention"
    """"mention": answer only comments with `/revise` or `@<bot name>`; "all": every human comment."""
    review_pull_requests: bool = False
    """Post a review of its own on opened / ready / synchronized pull requests."""
    skip_drafts: bool = True
    max_suggestions: int = 10
    max_files: int = 20
    max_regions: int = 40
    include: tuple[str, ...] = ("**",)
    exclude: tuple[str, ...] = ()
    strategy: str | None = None
    """A prompt strategy; None is the service's (REVISOR_STRATEGY)."""
    adapter: str | None = None
    """A LoRA adapter by name, from those the service offers (REVISOR_ADAPTERS); None: its model."""
    note_when_no_suggestion: bool = False
    """Reply when there is no suggestion, a confident one included, saying why."""
    min_confidence: float | None = None
    """Post only suggestions at least this confident; None: the service's threshold."""
    max_answers_per_pull_request: int = 50
    """Revisor's replies and reviews on one pull request, at most: beyond, it stays quiet there."""
    allowed_authors: tuple[str, ...] = ("OWNER", "MEMBER", "COLLABORATOR")
    """Whose comments and pull requests Revisor acts on, by GitHub's `author_association`: on a
    public repository anyone can comment, and every answer costs model time."""

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
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise RevisorError(f".github/revisor.yml: unknown setting(s) {', '.join(unknown)}")
        for name, value in data.items():
            if isinstance(getattr(cls(), name), tuple) and not isinstance(value, list):
                raise RevisorError(f".github/revisor.yml: {name} must be a list, e.g. {name}: [{value!r}]")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        config = replace(cls(), **values)
        if config.review_comments not in ("mention", "all"):
            raise RevisorError(".github/revisor.yml: review_comments must be mention or all")
        if config.strategy is not None and config.strategy not in (AUTO, *STRATEGIES):
            raise RevisorError(f".github/revisor.yml: strategy must be one of "
                               f"{', '.join((AUTO, *STRATEGIES))}")
        return replace(config, min_confidence=confidence_setting(
            ".github/revisor.yml: min_confidence", config.min_confidence))

    def wants(self, path: str) -> bool:
        from fnmatch import fnmatch

        return any(fnmatch(path, p) for p in self.include) and not any(fnmatch(path, p) for p in self.exclude)
