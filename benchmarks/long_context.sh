#!/usr/bin/env bash
# Does BDH use context longer than its training windows? (issues 13 and 29)
#
# Same-size models on WikiText-2 (tokens variant, byte level), each trained on the same number
# of tokens (STEPS x BATCH x 256 bytes):
#   bdh-windows          today's BDH on random windows (the usual way)
#   bdh-damped-windows   BDH with damped attention (model.attn_decay learned, from ALiBi's
#                        slopes) on random windows
#   bdh-damped-articles  the same with the state carried from batch to batch (data.train_mode
#                        stream, truncated BPTT) and reset where each article starts
#                        (data.stream_reset_articles)
#   llama                a LLaMA of about the same size on random windows
# Then `context-curve --per_article --windows` scores the WHOLE test split, each article its own
# stream (BDH: from an empty state; LLaMA: sliding windows of its block, stride 128); bits per
# byte by context in context_curve.json/png. Fits and curves run side by side (one thread each).
#   bash benchmarks/long_context.sh                      # -> results/long-context/per-article/
#   STEPS=300 BATCH=8 OUT=results/long-context/per-article bash benchmarks/long_context.sh
# A fit whose last.ckpt and steps file exist is not redone (delete runs/NAME to redo it).
# Issue 13's measurement (2 x 176 x 4 BDH, 400 steps of 16, the first 300K bytes scored as one
# stream) is in results/long-context/ itself: `git show 45ef88e:benchmarks/long_context.sh`.
set -euo pipefail
STEPS=${STEPS:-300}
BATCH=${BATCH:-8}
OUT=${OUT:-results/long-context/per-article}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

common=(--config configs/wikitext2.yaml --config configs/cpu.yaml
  --trainer.max_steps "$STEPS" --trainer.val_check_interval 100
  --data.init_args.block_size 256 --data.init_args.batch_size "$BATCH"
  --trainer.limit_val_batches 2 --trainer.enable_progress_bar false)
# BDH 2 x 128 x 4 heads, multiplier 8: 458,752 parameters (+4 decay rates when damped)
bdh=(--config configs/cpu/bdh.yaml --model.init_args.n_layer 2 --model.init_args.n_embd 128
  --model.init_args.n_head 4 --model.init_args.mlp_internal_dim_multiplier 8)
damped=(--model.init_args.attn_decay learned)
# LLaMA 2 x 128, SwiGLU 320: 443,008 parameters
llama=(--config configs/model/llama-tiny.yaml --config configs/cpu/llama-tiny.yaml
  --model.init_args.n_layer 2 --model.init_args.n_head 4 --model.init_args.n_embd 128
  --model.init_args.intermediate_size 320)
names=(bdh-windows bdh-damped-windows bdh-damped-articles llama)
labels=("BDH on windows" "damped BDH on windows" "damped BDH, carried state, reset per article"
  "LLaMA on windows")

fit() {  # name, then its arguments
  local name=$1
  shift
  if [ ! -f "$OUT/runs/$name/version_0/checkpoints/last.ckpt" ] \
    || ! grep -q "^$STEPS$" "$OUT/runs/$name/steps" 2>/dev/null; then
    rm -rf "$OUT/runs/$name"
    python -m bdh_pl fit "${common[@]}" "$@" --trainer.default_root_dir "$OUT/runs/$name" \
      >"$OUT/runs-$name.log" 2>&1
    echo "$STEPS" >"$OUT/runs/$name/steps"
  fi
}

start=$(date +%s)
mkdir -p "$OUT/runs"
fit bdh-windows "${bdh[@]}" --data.init_args.train_mode random &
fit bdh-damped-windows "${bdh[@]}" "${damped[@]}" --data.init_args.train_mode random &
fit bdh-damped-articles "${bdh[@]}" "${damped[@]}" --data.init_args.train_mode stream \
  --data.init_args.stream_reset_articles true &
fit llama "${llama[@]}" &
wait
echo "trained in $(($(date +%s) - start)) s (load: $(cut -d' ' -f1-3 /proc/loadavg))"

for i in "${!names[@]}"; do
  python -m bdh_pl context-curve --per_article --windows --out "$OUT/curves/${names[$i]}" \
    --label "${labels[$i]}" --ckpt_path "$OUT/runs/${names[$i]}/version_0/checkpoints/last.ckpt" \
    >"$OUT/curves-${names[$i]}.log" 2>&1 &
done
wait
python - "$OUT" "${names[@]}" <<'PY'  # the four tables in one
import json, sys
out, names = sys.argv[1], sys.argv[2:]
tables = [json.load(open(f"{out}/curves/{n}/context_curve.json")) for n in names]
merged = {"buckets": tables[0]["buckets"], "runs": [r for t in tables for r in t["runs"]]}
json.dump(merged, open(f"{out}/context_curve.json", "w"), indent=1)
PY
python -m bdh_pl context-curve --replot "$OUT"
echo "done in $(($(date +%s) - start)) s (load: $(cut -d' ' -f1-3 /proc/loadavg))"
