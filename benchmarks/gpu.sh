#!/usr/bin/env bash
# The reference run's A100 experiment and the GPU questions in one command (benchmarks/gpu.py has the
# plan; docs/gpu.md what each number means):
#
#   bash benchmarks/gpu.sh [gpu.py options]      # -> results/gpu/<device>/, under 10 minutes
#
# On this workplace's device machine (no internet there), prepared here first with
#   bash benchmarks/gpu_prepare.sh /path/to/pathwaycom-bdh
# the device tool's call is:
#   run(command="bash benchmarks/gpu.sh", carry=[".gpu"], timeout_s=600)
# Here it installs the carried wheels (.gpu/whl: packages the device image lacks), reads the
# data from .gpu/data and the official code from .gpu/official unless BDH_PL_DATA_DIR /
# BDH_OFFICIAL say otherwise, and, where the device tool's $OUT is set, packs the results
# (no checkpoints) into $OUT/gpu-results.tar.gz after every step.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}
if compgen -G ".gpu/whl/*.whl" >/dev/null; then
  site=$(mktemp -d)
  PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --target "$site" .gpu/whl/*.whl
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ -z "${BDH_PL_DATA_DIR:-}" ] && [ -d .gpu/data ]; then
  export BDH_PL_DATA_DIR=$PWD/.gpu/data
fi
if [ -z "${BDH_OFFICIAL:-}" ] && [ -f .gpu/official/bdh.py ]; then
  export BDH_OFFICIAL=$PWD/.gpu/official
fi
snapshot=()
if [ -n "${OUT:-}" ]; then
  snapshot=(--snapshot "$OUT/gpu-results.tar.gz")
fi
exec "$PYTHON" benchmarks/gpu.py "${snapshot[@]}" "$@"
