#!/usr/bin/env bash
# One prepared GPU check (about 3-5 minutes on one H100). On the lent machine, from the repository root:
#   bash benchmarks/gpu_check.sh            (results printed and written to $OUT/gpu_check.json when OUT is set)
# The machine has torch, transformers, peft, scikit-learn and pandas but not soundfile, cffi or espeakng-loader:
# carry them as wheels in .whl/ (see the device notes), they are installed here first.
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TQDM_DISABLE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 480 python3 benchmarks/gpu_check.py --device "${DEVICE:-cuda}" ${QUICK:+--quick} --out "${OUT:-/tmp}/gpu_check.json"
