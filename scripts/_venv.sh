# Sourced by scripts/*: make sure .venv exists with convlab and its dev extra installed.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
stamp=.venv/.convlab-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  # torch is pinned to the CPU build (a test-only oracle); a bare "torch" would pull CUDA.
  .venv/bin/python -m pip install -q -e ".[dev]"
  touch "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
if [[ -z "${CONVLAB_DATA:-}" && -d "$ROOT/../shared/datasets" ]]; then
  export CONVLAB_DATA="$ROOT/../shared/datasets"
fi
