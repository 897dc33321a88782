#!/usr/bin/env bash
# What BDH learned (issues 24, 33): sparsity, selectivity and the neuron graph, against controls.
#
# Trains on byte-level tiny Shakespeare (block 128, batch 32) with ONE recipe for every model
# (issue 33: a control trained differently from the BDH it is compared with is no control):
# the same tokens (seed 1337), the same steps and schedule (linear warmup 10 steps, cosine decay
# to lr/10), dropout 0, AdamW (0.9, 0.95) with weight decay 0.1 on matrices; only the peak
# learning rate is each model's own (BDH 0.003 small / 0.004 anchor, LLaMA 0.002, GPT-2 0.004).
# - small: BDH (configs/cpu/bdh.yaml: 2 x 64 x 2, multiplier 16: 229K) and LLaMA 2 x 64,
#   SwiGLU 448, STEPS steps, each to the end of its schedule;
# - anchor: BDH 4 x 192 x 4, multiplier 16 (1.9M, the size of
#   configs/benchmark/shakespeare-fair.yaml), LLaMA 4 x 192 (SwiGLU 512) and GPT-2 4 x 192, each
#   ANCHOR_STEPS steps, the whole of an ANCHOR_STEPS-step schedule (issue 33: BDH trained to the
#   end of its schedule, all three the same): the anchor BDH took 30-40 s a step on an earlier
#   2-core machine without AVX-512, about 4 s on one with AMX (runs/frontier-times.md).
# Then `inspect` on each BDH (its untrained twin and the transformers as controls) into
# $OUT/bdh and $OUT/bdh-small.
#   bash benchmarks/interpretability.sh                  # -> results/interpretability/
#   STAGE=fit bash benchmarks/interpretability.sh        # train only
#   ONLY=small bash benchmarks/interpretability.sh       # the small pair only
#   ONLY=anchor bash benchmarks/interpretability.sh      # the anchor BDH and its controls only
#   ONLY=frontier bash benchmarks/interpretability.sh    # a frontier BDH and its LLaMA only
# - frontier: a frontier BDH of results/wikitext2-frontier, BUDGET (default 2e12 FLOPs: bdh-d32,
#   lr 0.016, seed 1337) and, as its control, that budget's best LLaMA (llama-l2d32, seed 1337),
#   each retrained from its committed config (WikiText-2 bytes, the same data stream, seed and
#   recipe: warmup 5%, cosine to lr/10 at the last step, dropout 0, weight decay 0.1), the LLaMA
#   cut to the BDH's steps so that both read the same tokens (issue 33's rule; at its budget
#   the LLaMA read 6.2x the tokens: 6,036 steps to BDH's 970), then inspected on the test
#   split, into $OUT/bdh-frontier. The frontier's best BDH (BUDGET=2e13: bdh-d64, 3,368 steps,
#   and llama-l3d112) goes to $OUT/bdh-frontier-2e13.
# A fit whose last.ckpt and recipe file exist is not redone (delete runs/NAME to redo it).
set -euo pipefail
STEPS=${STEPS:-400}
ANCHOR_STEPS=${ANCHOR_STEPS:-150}
OUT=${OUT:-results/interpretability}
STAGE=${STAGE:-all}
ONLY=${ONLY:-all}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # one thread: the machine is shared

common=(--config configs/shakespeare.yaml --config configs/cpu.yaml --trainer.val_check_interval 25
  --data.init_args.block_size 128 --data.init_args.batch_size 32
  --trainer.enable_progress_bar false)
recipe=(--model.init_args.config.dropout 0.0 --model.init_args.training.warmup_steps 10
  --model.init_args.training.weight_decay 0.1)
bdh=(--config configs/cpu/bdh.yaml --model.init_args.config.n_layer 4 --model.init_args.config.n_embd 192
  --model.init_args.config.n_head 4 --model.init_args.config.mlp_internal_dim_multiplier 16
  --model.init_args.training.learning_rate 0.004 --model.init_args.training.min_learning_rate 0.0004)
bdh_small=(--config configs/cpu/bdh.yaml)
llama=(--config configs/model/llama-tiny.yaml --model.init_args.config.n_layer 4
  --model.init_args.config.n_head 4 --model.init_args.config.n_embd 192 --model.init_args.config.intermediate_size 512
  --model.init_args.training.learning_rate 0.002 --model.init_args.training.min_learning_rate 0.0002)
llama_small=(--config configs/model/llama-tiny.yaml --model.init_args.config.n_layer 2
  --model.init_args.config.n_head 2 --model.init_args.config.n_embd 64 --model.init_args.config.intermediate_size 448
  --model.init_args.training.learning_rate 0.002 --model.init_args.training.min_learning_rate 0.0002)
gpt2=(--config configs/model/gpt2-scratch.yaml --model.init_args.config.n_layer 4
  --model.init_args.config.n_head 4 --model.init_args.config.n_embd 192
  --model.init_args.training.learning_rate 0.004 --model.init_args.training.min_learning_rate 0.0004)

fit() {  # name, steps, then its arguments; the run's arguments are kept in runs/NAME/recipe
  local name=$1 steps=$2
  shift 2
  # Each schedule ends at the run's last step: a run stopped mid-schedule is not trained to its end.
  local args=("${common[@]}" --trainer.max_steps "$steps" "$@" "${recipe[@]}"
    --model.init_args.training.lr_decay_steps "$steps")
  if [ ! -f "$OUT/runs/$name/version_0/checkpoints/last.ckpt" ] \
    || [ "$(cat "$OUT/runs/$name/recipe" 2>/dev/null)" != "${args[*]}" ]; then
    rm -rf "$OUT/runs/$name"
    nice -n 10 python -m bdh_pl fit "${args[@]}" --trainer.default_root_dir "$OUT/runs/$name"
    echo "${args[*]}" >"$OUT/runs/$name/recipe"
  fi
}

fit_config() {  # name, a run's full config from the frontier (its own root dir replaced), more
  # The frontier's configs hold the model's init_args flat (their commit's layout): nested first.
  mkdir -p "$OUT/configs" && python scripts/nest_config.py "$2" "$OUT/configs/$1.yaml"
  local name=$1 args=(--config "$OUT/configs/$1.yaml" --trainer.default_root_dir "$OUT/runs/$1" "${@:3}")
  if [ ! -f "$OUT/runs/$name/version_0/checkpoints/last.ckpt" ] \
    || [ "$(cat "$OUT/runs/$name/recipe" 2>/dev/null)" != "${args[*]}" ]; then
    rm -rf "$OUT/runs/$name"
    nice -n 10 python -m bdh_pl fit "${args[@]}"
    echo "${args[*]}" >"$OUT/runs/$name/recipe"
  fi
}

best() { echo "$OUT/runs/$1/version_0/checkpoints/best.ckpt"; }
start=$(date +%s)
if [ "$ONLY" = frontier ]; then
  frontier=results/wikitext2-frontier/configs
  case ${BUDGET:-2e12} in
    2e12) pair=(bdh-d32/flops2e12/lr8x llama-l2d32/flops2e12/lr2x) steps=(970 242) suffix= ;;
    2e13) pair=(bdh-d64/flops2e13/lr8x llama-l3d112/flops2e13/lr2x) steps=(3368 842) suffix=-2e13 ;;
    *) echo "BUDGET: 2e12 or 2e13" >&2 && exit 2 ;;
  esac
  fit_config "bdh-frontier$suffix" "$frontier/${pair[0]}-seed1337.yaml" &
  bdh_fit=$!
  fit_config "llama-frontier$suffix" "$frontier/${pair[1]}-seed1337.yaml" \
    --trainer.max_steps "${steps[0]}" --trainer.val_check_interval "${steps[1]}" &
  wait "$bdh_fit" && wait $!
  echo "trained in $(($(date +%s) - start)) s (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  [ "$STAGE" = fit ] && exit 0
  nice -n 10 python -m bdh_pl inspect --ckpt_path "$(best "bdh-frontier$suffix")" --label "bdh-frontier$suffix" \
    --control "$(best "llama-frontier$suffix")" --control_label "llama-frontier$suffix" \
    --max_tokens "${FRONTIER_TOKENS:-262144}" --out "$OUT/bdh-frontier$suffix"
  echo "done in $(($(date +%s) - start)) s (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  exit 0
fi
if [ "$ONLY" != anchor ]; then
  fit bdh-small "$STEPS" "${bdh_small[@]}" &
  small=$!
  fit llama-small "$STEPS" "${llama_small[@]}" &  # side by side: one thread each, two cores
  wait "$small" && wait $!
fi
if [ "$ONLY" != small ]; then
  fit llama "$ANCHOR_STEPS" "${llama[@]}"
  fit gpt2 "$ANCHOR_STEPS" "${gpt2[@]}"
  fit bdh "$ANCHOR_STEPS" "${bdh[@]}"
fi
echo "trained in $(($(date +%s) - start)) s (load: $(cut -d' ' -f1-3 /proc/loadavg))"
[ "$STAGE" = fit ] && exit 0

if [ "$ONLY" != anchor ]; then
  nice -n 10 python -m bdh_pl inspect --ckpt_path "$(best bdh-small)" --label bdh-small \
    --control "$(best llama-small)" --control_label llama-small --out "$OUT/bdh-small"
fi
if [ "$ONLY" != small ]; then
  nice -n 10 python -m bdh_pl inspect --ckpt_path "$(best bdh)" --label bdh \
    --control "$(best llama)" "$(best gpt2)" --control_label llama gpt2 --out "$OUT/bdh"
fi
echo "done in $(($(date +%s) - start)) s (load: $(cut -d' ' -f1-3 /proc/loadavg))"
