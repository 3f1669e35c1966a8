#!/usr/bin/env bash
# One GPU session's work, as run on a lent H100 (see models/default/MODEL_CARD.md): the paper-budget trainings, a
# 5-fold cross-validation at a GPU budget, and the CUDA checks of the inference engine, all at once on one GPU.
#
#   OUT=/some/folder TIME_LIMIT=300 bash scripts/gpu_run.sh      # SMOKE=1 shrinks everything for a CPU dry run
#
# Needs python3 with torch (CUDA build) and the requirements below; wheels in .whl/ are installed first when present
# (the lent machine has no package index). Writes bundles and logs under $OUT.
set -uo pipefail
OUT=${OUT:?set OUT to an output folder}
TIME_LIMIT=${TIME_LIMIT:-300}          # seconds of training per run (each stops gracefully, best weights kept)
CV_TIMEOUT=${CV_TIMEOUT:-420}          # the cross-validation has no graceful stop: hard limit
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
LOGS=/tmp/gpu-logs; mkdir -p "$LOGS" "$OUT"
DEVICE=cuda; STUDIES=300; TEST=60; CV_STUDIES=120; ITERS=20000; SMALL_ITERS=4000; CV_ITERS=1500; JOBS=4
if [ "${SMOKE:-0}" = 1 ]; then
  DEVICE=cpu; STUDIES=9; TEST=3; CV_STUDIES=15; ITERS=4; SMALL_ITERS=4; CV_ITERS=2; JOBS=2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null | tee "$LOGS/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$LOGS/gpu.txt"

common=(--source phantom --phantom-size 256 --phantom-slices 40 --max-slices 20 --jobs "$JOBS" --device "$DEVICE"
        --threads 2 --no-progress --log-every 100)
train() {  # name, then extra arguments
  local name=$1; shift
  $PY -m training train "${common[@]}" --studies "$STUDIES" --test-studies "$TEST" --time-limit "$TIME_LIMIT" \
    --out "$OUT/$name" --work-dir "/tmp/work-$name" --name default "$@" > "$LOGS/$name.log" 2>&1
  cp "/tmp/work-$name/metrics.jsonl" "$LOGS/$name.metrics.jsonl" 2>/dev/null
  echo "== $name: $(tail -n 1 "$LOGS/$name.log")"
}
# The paper's recipe and budget: width 1.0, 224 px, Adam lr 1e-4, 20,000 iterations, validation every 500,
# patience 1,000.
train paper --version 2.0.0 --width 1.0 --size 224 --lr 1e-4 --iterations "$ITERS" --val-every 500 --patience 1000 &
# The same at half width (a quarter of the compute: the CPU-friendly candidate).
train half --version 2.0.0-half --width 0.5 --size 224 --lr 1e-4 --iterations "$ITERS" --val-every 500 \
  --patience 1000 &
# The CPU-budget recipe of bundle 1.0.0 (width 0.25, 112 px, lr 5e-4) with 5x the data and 4x the iterations.
train small --version 1.1.0 --width 0.25 --size 112 --lr 5e-4 --iterations "$SMALL_ITERS" --val-every 200 \
  --patience 1000 &
# 5-fold patient-level cross-validation, MultiScaleVGG vs ResNet-18, at a GPU budget.
( timeout "$CV_TIMEOUT" $PY -m training crossval "${common[@]}" --studies "$CV_STUDIES" --task 3way --folds 5 \
    --width 1.0 --size 224 --lr 1e-4 --iterations "$CV_ITERS" --val-every 250 --patience 1000 \
    --out /tmp/crossval > "$LOGS/crossval.log" 2>&1; echo "== crossval rc $?" ) &
# CUDA checks of the inference engine: the CLI on a DICOM phantom on both devices, and the end-to-end bench.
(
  $PY - <<'EOF' > "$LOGS/cuda_checks.log" 2>&1
from pathlib import Path
from training.phantom import generate_study, write_dicom_series
write_dicom_series(generate_study(5, "COVID", size=256, n_slices=40), Path("/tmp/ph-dicom"))
EOF
  for dev in cpu "$DEVICE"; do
    $PY -m inference analyze /tmp/ph-dicom --saliency all --device "$dev" --out "$LOGS/analyze-$dev.json" \
      >> "$LOGS/cuda_checks.log" 2>&1
  done
  DEV=$DEVICE $PY - <<'EOF' >> "$LOGS/cuda_checks.log" 2>&1
import json, os
a, b = (json.load(open(f"/tmp/gpu-logs/analyze-{d}.json")) for d in ("cpu", os.environ["DEV"]))
pa, pb = a["prediction"]["probabilities"], b["prediction"]["probabilities"]
print("study label cpu", a["prediction"]["label"], os.environ["DEV"], b["prediction"]["label"])
print("max |p_cpu - p_dev|", max(abs(pa[k] - pb[k]) for k in pa))
print("infection % cpu", a["infection_percent"], "dev", b["infection_percent"])
print("boxes cpu", sum(len(s["boxes"]) for s in a["slices"]), "dev", sum(len(s["boxes"]) for s in b["slices"]))
print("timings cpu", a["timings_s"], "dev", b["timings_s"])
EOF
  if [ "$DEVICE" = cuda ]; then $PY bench/analyze.py --device cuda >> "$LOGS/cuda_checks.log" 2>&1; fi
  echo "== cuda checks done"
) &
wait
[ -d /tmp/crossval ] && tar -C /tmp -czf "$OUT/crossval.tar.gz" crossval
tar -C /tmp -czf "$OUT/logs.tar.gz" gpu-logs
for name in paper half small; do grep -h "^trained" "$LOGS/$name.log"; done
$PY - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
for meta in sorted(Path(sys.argv[1]).glob("*/model.json")):
    m = json.loads(meta.read_text())
    h, t = m["metrics"].get("held_out", {}), m["training"]
    print(meta.parent.name, "iters", t["iterations"], "wall", t["wall_s"], "best", t["best"],
          {lvl: {k: h[lvl][k] for k in ("accuracy", "auc")} for lvl in h})
EOF
tail -n 5 "$LOGS/crossval.log"; cat "$LOGS/cuda_checks.log" | tail -n 25
