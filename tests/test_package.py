"""The package as a team installs it: a wheel in a fresh virtual environment."""

import os
import subprocess
import sys
import tomllib
import zipfile

import pytest

from tests.conftest import ROOT
from tests.github_server import ServerThread, create_github_app
from tests.repo_history import REPO, history_github
from tests.test_cli import DEMO
from tests.test_mining import TOKEN


def run(*command, **options) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=600, **options)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def floors() -> list[str]:
    """Each dependency pinned to the lowest version pyproject.toml allows."""
    from packaging.requirements import Requirement

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return [f"{r.name}=={s.version}" for r in map(Requirement, dependencies) for s in r.specifier
            if s.operator == ">="]


@pytest.mark.slow
def test_the_wheel_adds_one_import_name_and_the_bot_alone_runs_without_torch(tmp_path):
    """Installed with every dependency at its floor, as the oldest environment pyproject.toml
    admits: the floors must be true."""
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", ROOT)
    [wheel] = (tmp_path / "dist").glob("revisor-*.whl")
    top_level = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"revisor"}

    venv = tmp_path / "fresh"
    run(sys.executable, "-m", "venv", venv)
    (tmp_path / "floors.txt").write_text("\n".join(floors()) + "\n")
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel,
        "--constraint", tmp_path / "floors.txt")
    [site] = venv.glob("lib/python*/site-packages")
    assert not {"bot", "model", "training"} & {p.name for p in site.iterdir()}
    assert "Review code:" in run(venv / "bin" / "revisor", "--help").stdout
    for heavy in ("torch", "vllm", "transformers"):  # the bot in front of a model server needs none
        imported = subprocess.run([venv / "bin" / "python", "-c", f"import {heavy}"], capture_output=True)
        assert imported.returncode != 0, f"{heavy} is installed without an extra"

    review = subprocess.run([venv / "bin" / "revisor", "review", DEMO, "--engine", "openai",
                             "--base-url", "http://127.0.0.1:9/v1", "--comment", "app/storage.py:11-13=why?"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert "cannot reach the model server at http://127.0.0.1:9/v1" in review.stderr  # all else ran

    gh, _, _ = history_github(tmp_path)  # PyGithub at its floor: pages, commits, contents
    gh.tokens.add(TOKEN)
    with ServerThread(create_github_app(gh)) as url:
        mined = run(venv / "bin" / "revisor", "mine", "--repo", REPO, "--output", tmp_path / "pairs.jsonl",
                    cwd=tmp_path, env={**os.environ, "GITHUB_API_URL": url, "GITHUB_TOKEN": TOKEN})
    assert "4 pair(s)" in mined.stdout
