#!/usr/bin/env bash
# One GPU session: train the demo recipe (and a few variants that also fit the 2-core CPU
# budget) on EBHI-Seg train with per-epoch selection on val, measure training and pure-forward
# throughput, and time the same recipe on 2 CPU threads alongside. Test is NOT evaluated here:
# the variant is chosen on val afterwards, then test is evaluated once
# (unitumour evaluate --split test --write-card).
#
# Usage (repo root; data copied to .gpu/ebhi-seg, which .gitignore ignores):
#   OUT=/tmp/out bash benchmarks/gpu_train_session.sh            # on the GPU machine
#   SMOKE=1 OUT=/tmp/out bash benchmarks/gpu_train_session.sh     # minutes-long CPU dry run
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
DATA=${DATA:-.gpu/ebhi-seg/manifest.csv}
RUNS=${RUNS:-/tmp/unitumour-runs}
BUDGET_S=${BUDGET_S:-230}   # start no new variant after this many seconds
STOP_S=${STOP_S:-300}       # and stop training variants at this many seconds
OUT=${OUT:?set OUT}
mkdir -p "$RUNS" "$OUT"
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }
pin() { if command -v taskset >/dev/null; then echo taskset -c "$1"; fi; }

if [ "${SMOKE:-0}" = 1 ]; then
  DEV=cpu; EXTRA=(--limit 24 --epochs 1 --batch-size 4 --threads 2); CPU_EXTRA=(--limit 24 --max-steps 3)
  BENCH=(--device cpu --train-batches 2 --forward-batches 2 --iters 1 --threads 2)
  CORES_GPU=0-1; CORES_CPU=0-1
else
  DEV=cuda; EXTRA=(); CPU_EXTRA=()
  BENCH=(--device cuda --train-batches 16,64 --forward-batches 16,32,64 --iters 30)
  n=$(nproc); CORES_GPU=0-$((n - 3)); CORES_CPU=$((n - 2))-$((n - 1))
fi

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  $PY -c "import torch, cv2, scipy, safetensors, typer, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cv2', cv2.__version__, 'numpy', numpy.__version__)"
  nproc; } > "$OUT/env.txt" 2>&1

# The demo recipe on 2 CPU threads, in the background: seconds per epoch for the card.
mkdir -p "$RUNS/cpu2"
$(pin "$CORES_CPU") $PY -m unitumour_dicom.train --manifest "$DATA" --out "$RUNS/cpu2/cpu2.safetensors" \
  --device cpu --threads 2 --workers 0 --test-split '' --log-file "$OUT/cpu2_epochs.jsonl" \
  "${CPU_EXTRA[@]}" > "$RUNS/cpu2/train.log" 2>&1 &
cpu_pid=$!

run() {
  local name=$1; shift
  if [ "$(elapsed)" -gt "$BUDGET_S" ]; then echo "skip $name at $(elapsed)s"; return; fi
  mkdir -p "$RUNS/$name"
  timeout $(( STOP_S - $(elapsed) )) env -u WORLD_SIZE $(pin "$CORES_GPU") $PY -m unitumour_dicom.train --manifest "$DATA" \
    --out "$RUNS/$name/$name.safetensors" --device "$DEV" --test-split '' \
    --log-file "$RUNS/$name/epochs.jsonl" "$@" "${EXTRA[@]}" > "$RUNS/$name/train.log" 2>&1
  echo "$name rc=$? at $(elapsed)s"; tail -n 3 "$RUNS/$name/train.log" | cut -c1-300
}
# Variants, in priority order; all fit the 2-core CPU budget (see the card).
run e20s0 --epochs 20 --seed 0
run e24s0 --epochs 24 --seed 0
run e20s1 --epochs 20 --seed 1
run e20lr4 --epochs 20 --seed 0 --lr 0.004
run e20s2 --epochs 20 --seed 2

first=$(ls "$RUNS"/e20s0/*.safetensors 2>/dev/null | head -1)
echo "benchmark on ${first:-untrained recipe network} at $(elapsed)s"
timeout 75 $PY benchmarks/model_throughput.py ${first:+--model "$first"} "${BENCH[@]}" \
  --json-out "$OUT/bench.json" > "$RUNS/bench.log" 2>&1
echo "bench rc=$? at $(elapsed)s"; cat "$RUNS/bench.log" | cut -c1-400

kill "$cpu_pid" 2>/dev/null; wait "$cpu_pid" 2>/dev/null
echo "cpu2 epochs:"; cat "$OUT/cpu2_epochs.jsonl" 2>/dev/null | cut -c1-300
# At most 8 files of 16 MiB come back: cards and logs in one tar, weights in two.
(cd "$RUNS" && tar -cf "$OUT/cards_logs.tar" --exclude='*.safetensors' . \
  && tar -cf "$OUT/weights1.tar" $(ls -d e20s0 e24s0 e20s1 2>/dev/null) \
  && tar -cf "$OUT/weights2.tar" --exclude='cpu2' $(ls -d e20lr4 e20s2 2>/dev/null) --files-from /dev/null)
ls -la "$OUT"
echo "done at $(elapsed)s"
