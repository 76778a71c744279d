#!/usr/bin/env bash
# One short GPU check (about 8 minutes on one H100): classifier throughput at 224 px with 1, 8 and 30
# vmapped seeds, LRP heatmaps/s, GAN step rate, and a short paper-sized case. JSON lines and a summary
# land in $OUT (default: runs/device_check).
#
#   bash scripts/device_check.sh            # on the accelerator
#   TINY=1 bash scripts/device_check.sh     # the same steps at toy sizes, to test the script on a CPU
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/device_check}"
mkdir -p "$OUT"
python -c "import jax; print('devices:', jax.devices())" | tee "$OUT/devices.txt"

if [ "${TINY:-0}" = 1 ]; then
  RES=32; ALPHA=0.25; SEEDS="1 2"; STEPS=2; REPEATS=1; GAN_GEN=8x2
  CASE_ARG="resolution=32,class_scale=0.03,alpha=0.25,seeds=2,epochs=1,batch_size=8,gan_steps=5"
else
  RES=224; ALPHA=1.0; SEEDS="1 8 30"; STEPS=10; REPEATS=3; GAN_GEN=64x5
  CASE_ARG="paper,seeds=8,epochs=3,gan_steps=300"
fi

for seeds in $SEEDS; do
  python scripts/benchmark.py train --resolution "$RES" --alpha "$ALPHA" --batch 16 --channels 3 \
    --seeds "$seeds" --mode vmapped --depthwise xla --pointwise xla --steps "$STEPS" --repeats "$REPEATS" \
    | grep '^{' >> "$OUT/train.jsonl"
done
python scripts/benchmark.py lrp --resolution "$RES" --alpha "$ALPHA" --batch 16 --channels 3 --composites epsilon \
  --depthwise xla --pointwise xla --steps "$STEPS" --repeats "$REPEATS" | grep '^{' >> "$OUT/lrp.jsonl"
python scripts/benchmark.py gan --resolution "$RES" --batch 16 --generators "$GAN_GEN" --steps "$STEPS" \
  --repeats "$REPEATS" | grep '^{' >> "$OUT/gan.jsonl"

start=$(date +%s)
python main.py --config="configs/generative.py:$CASE_ARG" --workdir="$OUT/case" \
  --config.model.depthwise_impl=xla --config.train.progress_bar=False > "$OUT/case.log" 2>&1
echo "{\"name\": \"paper_sized_generative_case\", \"seconds\": $(( $(date +%s) - start ))}" >> "$OUT/case.jsonl"

python - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
summary = {}
for name in ("train", "lrp", "gan", "case"):
    path = os.path.join(out, f"{name}.jsonl")
    if os.path.exists(path):
        summary[name] = [json.loads(line) for line in open(path) if line.strip()]
results = os.path.join(out, "case", "results.json")
if os.path.exists(results):
    r = json.load(open(results))
    summary["case_results"] = {"test_f1": r["splits"]["test"]["f1"], "wall_time_seconds": r["wall_time_seconds"]}
one = [m for m in summary.get("train", []) if m.get("seeds") == 1]
for m in summary.get("train", []):
    if one and m.get("seeds", 1) > 1:
        # Wall time of N seeds relative to one seed, for the same number of steps.
        m["wall_time_vs_one_seed"] = round(one[0]["items_per_s"] * m["seeds"] / m["items_per_s"], 2)
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=2)
print(json.dumps(summary, indent=1)[:4000])
PY
