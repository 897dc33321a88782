#!/usr/bin/env bash
# What BDH learned (issue 24): sparsity, selectivity and the neuron graph, against controls.
#
# Trains on byte-level tiny Shakespeare (block 128, batch 32, STEPS steps, the same tokens for
# every model but the anchor BDH, which stops at BDH_STEPS): the quality-anchor BDH (4 layers x 192 wide x 4 heads, multiplier 16: 1.9M
# parameters, the size of configs/benchmark/shakespeare-fair.yaml, its best lr), a smaller BDH
# (configs/cpu/bdh.yaml: 2 x 64 x 2, multiplier 16: 229K), and same-size transformers whose MLP
# neurons are the selectivity control (LLaMA 4 x 192, SwiGLU 512, and GPT-2 4 x 192, for the
# anchor; LLaMA 2 x 64, SwiGLU 448, for the small one). Then `inspect` on each BDH (its untrained
# twin and the transformers as controls) into $OUT/bdh and $OUT/bdh-small.
#   bash benchmarks/interpretability.sh                  # -> results/interpretability/
#   STEPS=400 OUT=results/interpretability bash benchmarks/interpretability.sh
#   STAGE=fit bash benchmarks/interpretability.sh        # train only
# A fit whose last.ckpt and steps file exist is not redone (delete runs/NAME to redo it).
set -euo pipefail
STEPS=${STEPS:-400}
# The anchor BDH runs the first BDH_STEPS steps of a STEPS-step schedule (its cosine decays over
# STEPS): measured here at 30-40 s a step on the shared 2-core machine, all 400 would take hours.
BDH_STEPS=${BDH_STEPS:-150}
OUT=${OUT:-results/interpretability}
STAGE=${STAGE:-all}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # one thread: the machine is shared

# Each model keeps the recipe of its config files: BDH configs/cpu/bdh.yaml's (dropout 0, warmup
# 10 steps), the transformers configs/model/*.yaml's (dropout 0.1, warmup 100 steps); AdamW,
# weight decay 0.1, cosine decay to lr/10 for all.
common=(--config configs/shakespeare.yaml --config configs/cpu.yaml --trainer.val_check_interval 25
  --data.init_args.block_size 128 --data.init_args.batch_size 32
  --trainer.enable_progress_bar false)
bdh=(--config configs/cpu/bdh.yaml --model.init_args.n_layer 4 --model.init_args.n_embd 192
  --model.init_args.n_head 4 --model.init_args.mlp_internal_dim_multiplier 16
  --model.init_args.learning_rate 0.004 --model.init_args.min_learning_rate 0.0004)
bdh_small=(--config configs/cpu/bdh.yaml)
llama=(--config configs/model/llama-tiny.yaml --model.init_args.n_layer 4
  --model.init_args.n_head 4 --model.init_args.n_embd 192 --model.init_args.intermediate_size 512
  --model.init_args.learning_rate 0.002 --model.init_args.min_learning_rate 0.0002)
llama_small=(--config configs/model/llama-tiny.yaml --model.init_args.n_layer 2
  --model.init_args.n_head 2 --model.init_args.n_embd 64 --model.init_args.intermediate_size 448
  --model.init_args.learning_rate 0.002 --model.init_args.min_learning_rate 0.0002)
gpt2=(--config configs/model/gpt2-scratch.yaml --model.init_args.n_layer 4
  --model.init_args.n_head 4 --model.init_args.n_embd 192
  --model.init_args.learning_rate 0.004 --model.init_args.min_learning_rate 0.0004)

fit() {  # name, steps, then its arguments
  local name=$1 steps=$2
  shift 2
  if [ ! -f "$OUT/runs/$name/version_0/checkpoints/last.ckpt" ] \
    || ! grep -q "^$steps$" "$OUT/runs/$name/steps" 2>/dev/null; then
    rm -rf "$OUT/runs/$name"
    python -m bdh_pl fit "${common[@]}" --trainer.max_steps "$steps" "$@" \
      --trainer.default_root_dir "$OUT/runs/$name"
    echo "$steps" >"$OUT/runs/$name/steps"
  fi
}

start=$(date +%s)
fit bdh-small "$STEPS" "${bdh_small[@]}"
fit llama "$STEPS" "${llama[@]}"
fit gpt2 "$STEPS" "${gpt2[@]}"
fit bdh "$BDH_STEPS" "${bdh[@]}" --model.init_args.lr_decay_steps "$STEPS"
fit llama-small "$STEPS" "${llama_small[@]}"
echo "trained in $(($(date +%s) - start)) s (load: $(cut -d' ' -f1-3 /proc/loadavg))"
[ "$STAGE" = fit ] && exit 0

best() { echo "$OUT/runs/$1/version_0/checkpoints/best.ckpt"; }
python -m bdh_pl inspect --ckpt_path "$(best bdh)" --label bdh \
  --control "$(best llama)" "$(best gpt2)" --control_label llama gpt2 --out "$OUT/bdh"
python -m bdh_pl inspect --ckpt_path "$(best bdh-small)" --label bdh-small \
  --control "$(best llama-small)" --control_label llama-small --out "$OUT/bdh-small"
echo "done in $(($(date +%s) - start)) s (load: $(cut -d' ' -f1-3 /proc/loadavg))"
