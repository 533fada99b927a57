"""What `deploy/` holds: a compose file that validates, and the GitHub App manifest."""

import json
import shutil
import subprocess

import yaml

from revisor.bot.handlers import wanted
from tests import bot_scenario as s
from tests.conftest import ROOT, unavailable

DEPLOY = ROOT / "deploy"


def test_compose_file_validates_and_starts_every_part_with_a_health_check(tmp_path):
    binary = shutil.which("docker-compose")
    if binary is None:
        unavailable("docker-compose is not installed (Debian: apt-get install docker-compose)")
    deploy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, deploy)
    shutil.copy(deploy / "revisor.env.example", deploy / "revisor.env")  # what a user fills in
    (deploy / "github-app.pem").write_text("")
    result = subprocess.run([binary, "-f", str(deploy / "compose.yaml"), "config"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert set(services) == {"redis", "vllm", "bot", "worker"}
    assert all("healthcheck" in service for service in services.values())
    vllm = services["vllm"]["command"]
    assert "--enable-lora" in vllm
    modules = vllm[vllm.index("--lora-modules") + 1:]
    assert modules == ["team-a=/adapters/team-a", "team-b=/adapters/team-b"]
    for name in ("bot", "worker"):
        env = services[name]["environment"]
        assert env["REVISOR_REDIS_URL"] == "redis://redis:6379/0"
        assert env["REVISOR_BASE_URL"] == "http://vllm:8000/v1" and env["REVISOR_ENGINE"] == "openai"
        assert env["REVISOR_ADAPTERS"] == "team-a,team-b"
    assert services["worker"]["deploy"]["replicas"] == 2
    assert "--appendfsync" in services["redis"]["command"]


def test_app_manifest_asks_for_the_least_the_bot_needs():
    manifest = json.loads((DEPLOY / "github-app-manifest.json").read_text())
    assert manifest["default_permissions"] == {
        "pull_requests": "write", "contents": "read", "metadata": "read"}
    assert manifest["hook_attributes"]["url"].endswith("/api/github/webhooks")
    assert not manifest["public"]
    # Every subscribed event is one the service acts on.
    review_command = s.fixture_payload("issue_comment/created.with-installation.payload.json")
    review_command["issue"]["pull_request"] = {"url": "x"}
    review_command["comment"]["body"] = "/revisor review"
    payloads = {"pull_request": s.pull_request_payload("opened"),
                "pull_request_review_comment": s.review_comment_payload(), "issue_comment": review_command}
    assert set(manifest["default_events"]) == set(payloads)
    assert all(wanted(event, payloads[event]) for event in manifest["default_events"])
