#!/usr/bin/env bash
# Does BDH use context longer than its training windows? (issue 13's measurement)
#
# A ~1.6M BDH (2 layers x 176 wide x 4 heads, multiplier 16: 1.58M parameters) trained on
# WikiText-2 (tokens variant, byte level) three times on the same tokens (STEPS x 16 x 256): on
# random windows (the usual way), and twice on 16 lanes of consecutive windows with the state carried
# from batch to batch (data.train_mode stream, truncated BPTT), once over whole lanes (the state
# never reset: up to 102K tokens) and once reset every 8 windows (2,048 tokens: bdh-carried-2k);
# a same-size LLaMA (4 x 176, SwiGLU 480: 1.60M) on random windows. Then `context-curve` scores the first TOKENS bytes of the
# test split: BDH as one stream (state carried) and on disjoint windows, LLaMA on sliding
# windows of its block (stride 128); bits per byte by context length in context_curve.json/png.
#   bash benchmarks/long_context.sh                # -> results/long-context/
#   STEPS=400 TOKENS=300000 OUT=results/long-context bash benchmarks/long_context.sh
# A fit whose last.ckpt and steps file exist is not redone (delete runs/NAME to redo it).
set -euo pipefail
STEPS=${STEPS:-400}
TOKENS=${TOKENS:-300000}
OUT=${OUT:-results/long-context}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # fits: one thread each (the curves: all cores)

common=(--config configs/wikitext2.yaml --config configs/cpu.yaml
  --trainer.max_steps "$STEPS" --trainer.val_check_interval 100
  --data.init_args.block_size 256 --data.init_args.batch_size 16
  --trainer.limit_val_batches 2 --trainer.enable_progress_bar false)
bdh=(--config configs/cpu/bdh.yaml --model.init_args.n_layer 2 --model.init_args.n_embd 176
  --model.init_args.n_head 4 --model.init_args.mlp_internal_dim_multiplier 16)
llama=(--config configs/model/llama-tiny.yaml --config configs/cpu/llama-tiny.yaml
  --model.init_args.n_layer 4 --model.init_args.n_head 4 --model.init_args.n_embd 176
  --model.init_args.intermediate_size 480)

fit() {  # name, then its arguments
  local name=$1
  shift
  if [ ! -f "$OUT/runs/$name/version_0/checkpoints/last.ckpt" ] \
    || ! grep -q "^$STEPS$" "$OUT/runs/$name/steps" 2>/dev/null; then
    rm -rf "$OUT/runs/$name"
    python -m bdh_pl fit "${common[@]}" "$@" --trainer.default_root_dir "$OUT/runs/$name"
    echo "$STEPS" >"$OUT/runs/$name/steps"
  fi
}

start=$(date +%s)
fit bdh-windows "${bdh[@]}" --data.init_args.train_mode random
fit bdh-carried "${bdh[@]}" --data.init_args.train_mode stream
fit bdh-carried-2k "${bdh[@]}" --data.init_args.train_mode stream --data.init_args.stream_reset_windows 8
fit llama "${llama[@]}"
echo "trained in $(($(date +%s) - start)) s (load: $(cut -d' ' -f1-3 /proc/loadavg))"

OMP_NUM_THREADS=${CURVE_THREADS:-$(nproc)} python -m bdh_pl context-curve --windows --max_tokens "$TOKENS" --out "$OUT" \
  --label "BDH trained on random windows" "BDH trained with carried state" \
  "BDH trained with carried state reset every 2K" "LLaMA trained on random windows" \
  --ckpt_path "$OUT"/runs/{bdh-windows,bdh-carried,bdh-carried-2k,llama}/version_0/checkpoints/last.ckpt
echo "done in $(($(date +%s) - start)) s (load: $(cut -d' ' -f1-3 /proc/loadavg))"
