"""docs/configuration.md and docs/cli.md, generated from the settings and commands themselves:
`python -m revisor.bot.reference` writes them (`--check`: fails when either is stale)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from revisor.bot.config import GitHubSettings, RepoConfig, ServiceSettings, StoreSettings
from revisor.model.settings import FIELDS, env_var, flag, shown_default

DOCS = Path(__file__).resolve().parents[2] / "docs"
REPO_KEYS = {name for name in RepoConfig.model_fields if name in FIELDS}
"""Model settings a repository may also choose in `.github/revisor.yml`."""
OTHER_VARIABLES = [
    ("REVISOR_HOME", "~/.cache/revisor", "Where Revisor keeps the converted and merged models, the "
                                         "retrieval index and the SQLite job store."),
    ("REVISOR_LOG_LEVEL", "unset", "`debug` shows the engines' and libraries' logs (as `revisor "
                                   "--verbose`)."),
    ("REVISOR_VLLM", "gpu with nvidia-smi, else cpu", "`scripts/setup.sh`: which vLLM build to install."),
]


def cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def default_of(model: type[BaseModel], name: str) -> str:
    field = model.model_fields[name]
    if field.default_factory is not None:
        return "see meaning"
    default = field.default
    if default is None or default == ():
        return "unset"
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, tuple):
        return ", ".join(default)
    return str(getattr(default, "get_secret_value", lambda: default)())


def settings_rows(settings: type[BaseSettings]) -> list[str]:
    prefix = settings.model_config.get("env_prefix", "")
    return [f"| `{(prefix + name).upper()}` | | | {cell(default_of(settings, name))} | "
            f"{cell(field.description)} |" for name, field in settings.model_fields.items()]


def configuration_markdown() -> str:
    header = ["| variable | flag | `revisor.yml` key | default | meaning |", "|---|---|---|---|---|"]
    model = [f"| `{env_var(name)}` | `{flag(name)}` | {f'`{name}`' if name in REPO_KEYS else ''} | "
             f"{cell(shown_default(name))} | {cell(field.description)} |" for name, field in FIELDS.items()]
    repo = [f"| `{name}` | {cell(default_of(RepoConfig, name))} | {cell(field.description)} |"
            for name, field in RepoConfig.model_fields.items()]
    other = [f"| `{name}` | | | {cell(default)} | {cell(meaning)} |"
             for name, default, meaning in OTHER_VARIABLES]
    return "\n".join([
        "# Configuration reference",
        "",
        "Generated from the code by `python -m revisor.bot.reference`; a test fails when it is stale.",
        "",
        "## The model",
        "",
        "Every command that runs the model (`revise`, `review`, `bench`, `calibrate`, `serve`, `worker`, "
        "`action`) takes these flags; each also reads its variable. A flag wins over the variable, the "
        "variable over the default. `calibrate` takes neither `--calibration` nor `--min-confidence`, "
        "since it makes the calibration.",
        "",
        *header, *model,
        "",
        "## GitHub, the job store and the service",
        "",
        *header, *settings_rows(GitHubSettings), *settings_rows(StoreSettings),
        *settings_rows(ServiceSettings), *other,
        "",
        "## A repository's `.github/revisor.yml`",
        "",
        "Read from the pull request's base branch, never from its head. An unknown key or a bad value "
        "fails the job with one line naming the key.",
        "",
        "| key | default | meaning |", "|---|---|---|", *repo,
        "",
    ])


def cli_markdown() -> str:
    from revisor.bot.cli import SectionedGroup, cli

    out = ["# Command reference", "",
           "Generated from the code by `python -m revisor.bot.reference`; a test fails when it is stale.",
           "", "```text", help_text(cli, "revisor"), "```", ""]
    for title, commands in SectionedGroup.SECTIONS.items():
        out += [f"## {title}", ""]
        for name in commands:
            command = cli.commands[name]
            subcommands = command.commands.items() if isinstance(command, click.Group) else []
            for info_name, each in [(name, command), *((f"{name} {sub}", c) for sub, c in subcommands)]:
                out += [f"### revisor {info_name}", "", "```text", help_text(each, f"revisor {info_name}"),
                        "```", ""]
    return "\n".join(out)


def help_text(command: click.Command, info_name: str) -> str:
    context = click.Context(command, info_name=info_name, terminal_width=100, max_content_width=100,
                            help_option_names=["-h", "--help"])
    return command.get_help(context)


def main(argv: list[str]) -> int:
    pages = {DOCS / "configuration.md": configuration_markdown(), DOCS / "cli.md": cli_markdown()}
    stale = [path for path, text in pages.items() if not path.is_file() or path.read_text() != text]
    if "--check" in argv:
        for path in stale:
            print(f"{path} is stale: run `python -m revisor.bot.reference`", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.write_text(pages[path])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
