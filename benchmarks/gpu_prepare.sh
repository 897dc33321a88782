#!/usr/bin/env bash
# Prepares .gpu/ (in .gitignore) for benchmarks/gpu.sh on a machine without internet, such as
# this workplace's device machine, which then gets it with carry=[".gpu"]:
#
#   bash benchmarks/gpu_prepare.sh [PATH_TO_PATHWAYCOM_BDH]
#
#   .gpu/whl/       wheels of what the device image lacks (jsonargparse and the two packages
#                   of its `signatures` extra: LightningCLI needs them), for CPython 3.12
#   .gpu/data/      tiny Shakespeare and WikiText-2 (tokens) from $BDH_PL_DATA_DIR
#                   (default ../shared/data): about 14 MB
#   .gpu/official/  bdh.py of the official code, copied from the checkout given (a folder with
#                   bdh.py, or a bare git repository: its HEAD); never committed here
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpu/whl .gpu/data
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux2014_x86_64 --platform any -d .gpu/whl \
  jsonargparse==4.53.0 docstring-parser==0.18.0 typeshed-client==2.15.0
data=${BDH_PL_DATA_DIR:-../shared/data}
mkdir -p .gpu/data/tinyshakespeare .gpu/data/wikitext-2
cp "$data/tinyshakespeare/input.txt" .gpu/data/tinyshakespeare/
cp "$data"/wikitext-2/wiki.{train,valid,test}.tokens .gpu/data/wikitext-2/
if [ $# -ge 1 ]; then
  mkdir -p .gpu/official
  if [ -f "$1/bdh.py" ]; then
    cp "$1/bdh.py" .gpu/official/
  else  # a bare repository (the fetch tool's mirror)
    git --git-dir="$1" show HEAD:bdh.py > .gpu/official/bdh.py
  fi
fi
du -sh .gpu
