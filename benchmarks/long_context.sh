#!/usr/bin/env bash
# Does BDH use context longer than its training windows? (issues 13 and 29)
#
# Same-size models on WikiText-2 (tokens variant, byte level), each trained on the same number
# of tokens (STEPS x BATCH x 256 bytes):
#   bdh-windows          today's BDH on random windows (the usual way)
#   bdh-damped-windows   BDH with damped attention (model.config.attn_decay learned, from ALiBi's
#                        slopes) on random windows
#   bdh-damped-articles  the same with the state carried from batch to batch (data.train_mode
#                        stream, truncated BPTT) and reset where each article starts
#                        (data.stream_reset_articles)
#   llama                a LLaMA of about the same size on random windows
# Then `context-curve --per_article --windows` scores the WHOLE test split, each article its own
# stream (BDH: from an empty state; LLaMA: sliding windows of its block, stride 128); bits per
# byte by context in context_curve.json/png. Fits and curves run side by side (one thread each).
# verdict.json: the success line, and per bucket the same bytes read in windows
# (`windows_same_bytes_bpb`): a gain there is not a difference between early and late bytes;
# `stream_gain_bpb` with its 5-95% band from resampling articles (context-curve's stream_gain).
#   bash benchmarks/long_context.sh                      # -> results/long-context/per-article/
#   STEPS=300 BATCH=8 OUT=results/long-context/per-article bash benchmarks/long_context.sh
#   STOP_AT=100 MAX_TOKENS=300000 bash benchmarks/long_context.sh   # what fitted in the time
#   STOP_AT=100 MODELS="bdh-damped-articles bdh-damped-windows llama" CURVE_JOBS=2 \
#     OUT=results/long-context/whole-split bash benchmarks/long_context.sh  # the whole split
#   OUT=results/long-context/whole-split-300 bash benchmarks/long_context.sh  # all four, 300 steps
#   SEED=2 OUT=results/long-context/whole-split-300-seed2 bash benchmarks/long_context.sh
# A fit whose last.ckpt and steps file exist is not redone (delete runs/NAME to redo it), nor
# a curve whose curves/NAME/context_curve.json exists (delete it to rescore).
# Issue 13's measurement (2 x 176 x 4 BDH, 400 steps of 16, the first 300K bytes scored as one
# stream) is in results/long-context/ itself: `git show 45ef88e:benchmarks/long_context.sh`.
set -euo pipefail
STEPS=${STEPS:-300}
BATCH=${BATCH:-8}
OUT=${OUT:-results/long-context/per-article}
STOP_AT=${STOP_AT:-$STEPS}  # stop the fits at this step of the STEPS-step schedule (for time)
MAX_TOKENS=${MAX_TOKENS:-}  # score only the first N bytes of the test split (default: all)
MODELS=${MODELS:-bdh-damped-articles bdh-damped-windows bdh-windows llama}  # fitted and scored
CURVE_JOBS=${CURVE_JOBS:-4}  # curves scored at once, in MODELS' order (fewer: the first finish sooner)
SEED=${SEED:-1337}  # seed_everything of every fit (a second seed: SEED=2 OUT=...-seed2)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

common=(--config configs/wikitext2.yaml --config configs/cpu.yaml --seed_everything "$SEED"
  --trainer.max_steps "$STOP_AT" --model.init_args.training.lr_decay_steps "$STEPS"
  --trainer.val_check_interval 100
  --data.init_args.block_size 256 --data.init_args.batch_size "$BATCH"
  --trainer.limit_val_batches 2 --trainer.enable_progress_bar false)
# BDH 2 x 128 x 4 heads, multiplier 8: 458,752 parameters (+4 decay rates when damped)
bdh=(--config configs/cpu/bdh.yaml --model.init_args.config.n_layer 2 --model.init_args.config.n_embd 128
  --model.init_args.config.n_head 4 --model.init_args.config.mlp_internal_dim_multiplier 8)
damped=(--model.init_args.config.attn_decay learned)
# LLaMA 2 x 128, SwiGLU 320: 443,008 parameters
llama=(--config configs/model/llama-tiny.yaml --config configs/cpu/llama-tiny.yaml
  --model.init_args.config.n_layer 2 --model.init_args.config.n_head 4 --model.init_args.config.n_embd 128
  --model.init_args.config.intermediate_size 320)
names=(bdh-windows bdh-damped-windows bdh-damped-articles llama)
labels=("BDH on windows" "damped BDH on windows" "damped BDH, carried state, reset per article"
  "LLaMA on windows")

fit() {  # name, then its arguments
  local name=$1
  shift
  if [ ! -f "$OUT/runs/$name/version_0/checkpoints/last.ckpt" ] \
    || ! grep -q "^$STOP_AT of $STEPS$" "$OUT/runs/$name/steps" 2>/dev/null; then
    rm -rf "$OUT/runs/$name"
    python -m bdh_pl fit "${common[@]}" "$@" --trainer.default_root_dir "$OUT/runs/$name" \
      >"$OUT/runs-$name.log" 2>&1
    echo "$STOP_AT of $STEPS" >"$OUT/runs/$name/steps"
  fi
}

train() {  # one of names
  case $1 in
    bdh-windows) fit "$1" "${bdh[@]}" --data.init_args.train_mode random ;;
    bdh-damped-windows) fit "$1" "${bdh[@]}" "${damped[@]}" --data.init_args.train_mode random ;;
    bdh-damped-articles)
      fit "$1" "${bdh[@]}" "${damped[@]}" --data.init_args.train_mode stream \
        --data.init_args.stream_reset_articles true
      ;;
    llama) fit "$1" "${llama[@]}" ;;
  esac
}
for name in $MODELS; do
  case " ${names[*]} " in
    *" $name "*) ;;
    *) echo "MODELS: no model $name; give some of: ${names[*]}" >&2 && exit 2 ;;
  esac
done

start=$(date +%s)
mkdir -p "$OUT/runs"
for name in $MODELS; do train "$name" & done
wait
echo "trained in $(($(date +%s) - start)) s (load: $(cut -d' ' -f1-3 /proc/loadavg))"

limit=(${MAX_TOKENS:+--max_tokens "$MAX_TOKENS"})
scored=()
for name in $MODELS; do
  for i in "${!names[@]}"; do
    if [ "${names[$i]}" = "$name" ]; then label=${labels[$i]}; fi
  done
  scored+=("$name")
  [ -f "$OUT/curves/$name/context_curve.json" ] && continue  # scored already
  while [ "$(jobs -rp | wc -l)" -ge "$CURVE_JOBS" ]; do wait -n || true; done
  python -m bdh_pl context-curve --per_article --windows "${limit[@]}" \
    --out "$OUT/curves/$name" --label "$label" \
    --ckpt_path "$OUT/runs/$name/version_0/checkpoints/last.ckpt" \
    >"$OUT/curves-$name.log" 2>&1 &
done
wait
echo "scored in $(($(date +%s) - start)) s (load: $(cut -d' ' -f1-3 /proc/loadavg))"
python - "$OUT" "${scored[@]}" <<'PY'  # the tables in one, and the success line
import json, sys
out, names = sys.argv[1], sys.argv[2:]
tables = [json.load(open(f"{out}/curves/{n}/context_curve.json")) for n in names]
runs = [r for t in tables for r in t["runs"]]
json.dump({"buckets": tables[0]["buckets"], "runs": runs}, open(f"{out}/context_curve.json", "w"), indent=1)

def pooled(buckets, lo, hi):  # bpb of the bytes whose context is in [lo, hi)
    bs = [b for b in buckets if b["from"] >= lo and (b["to"] or 1e18) <= hi and b["bytes"]]
    n = sum(b["bytes"] for b in bs)
    return {"bytes": n, "bpb": sum(b["bpb"] * b["bytes"] for b in bs) / n if n else None}

def bucket(stream, lo, hi):  # the stream's bpb there, and the same bytes read in windows
    same = pooled(stream.get("windows_same_bytes", []), lo, hi)["bpb"]
    gain = [g for g in stream.get("stream_gain", []) if g["from"] == lo and g["to"] == hi]
    return {**pooled(stream["buckets"], lo, hi), "windows_same_bytes_bpb": same,
            **({"stream_gain_bpb": gain[0]["gain_bpb"], "band_5_95": gain[0]["band"]} if gain else {})}

verdict = []
for label in dict.fromkeys(r["label"] for r in runs):
    mine = {r["mode"]: r for r in runs if r["label"] == label}
    if "stream" not in mine:
        continue
    row = {"label": label, "windows_bpb": mine["windows"]["bpb"], "stream_bpb": mine["stream"]["bpb"],
           **{k: bucket(mine["stream"], lo, hi) for k, lo, hi in
              [("0-256", 0, 256), ("1k-4k", 1024, 4096), ("4k-16k", 4096, 16384)]}}
    row["gains_from_reading_further"] = all(
        row[k]["bpb"] is not None and row[k]["bpb"] < min(row["0-256"]["bpb"], row["windows_bpb"])
        for k in ("1k-4k", "4k-16k"))
    verdict.append(row)
json.dump(verdict, open(f"{out}/verdict.json", "w"), indent=1)
for row in verdict:
    print(row)
PY
python -m bdh_pl context-curve --replot "$OUT"
echo "done in $(($(date +%s) - start)) s (load: $(cut -d' ' -f1-3 /proc/loadavg))"
