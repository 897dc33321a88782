#!/usr/bin/env bash
cd /work/main
export PYTHONPATH=$PWD BDH_PL_DATA_DIR=/work/shared/data OMP_NUM_THREADS=2
echo "start $(date -u) commit $(git rev-parse --short HEAD) uptime: $(uptime)"
/usr/bin/time -v nice -n 5 python -m bdh_pl fit --config configs/wikitext2.yaml --trainer.max_steps 2 \
  --trainer.limit_val_batches 1 --trainer.default_root_dir /tmp/card-fit2 2>&1 \
  | while IFS= read -r l; do echo "$(date -u +%T) $l"; done
echo "rc ${PIPESTATUS[0]} end $(date -u) uptime: $(uptime)"
