#!/usr/bin/env bash
# One short accelerator check (about 9 minutes on one H100): classifier throughput at 224 px with
# 1, 8 and 30 vmapped seeds, LRP heatmaps/s, GAN steps/s at the paper's GAN batch, with several
# GPUs also a seeds x data mesh and one process per GPU (jax.distributed on this host), a short
# paper-sized case, and from these the estimated wall time of the paper's whole study. JSON lines
# and summary.json land in $OUT (default: runs/device_check).
#
#   bash scripts/device_check.sh            # on the accelerator
#   TINY=1 bash scripts/device_check.sh     # the same steps at toy sizes, to test the script on a CPU
#                                           # (two host CPU devices stand in for two GPUs)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/device_check}"
mkdir -p "$OUT"
rm -f "$OUT"/{train,lrp,gan,mesh,processes,case}.jsonl
rm -rf "$OUT/case"  # a check measures a fresh run; an old one (another setup) would be refused
python -c "import jax; print('devices:', jax.devices())" | tee "$OUT/devices.txt"

if [ "${TINY:-0}" = 1 ]; then
  RES=32; ALPHA=0.25; SEEDS="1 2"; STEPS=2; REPEATS=1; GAN_GEN=8x2; GAN_BATCH=8
  CASE_ARG="resolution=32,class_scale=0.03,alpha=0.25,seeds=2,epochs=1,batch_size=8,gan_steps=5"
  SWEEP="--resolution 32 --alpha 0.25 --class-scale 0.05 --epochs 2 --repeats 1"
  GPUS=2; PLATFORM=cpu; PIN=--pin; MESH_ENV="XLA_FLAGS=--xla_force_host_platform_device_count=2"
else
  RES=224; ALPHA=1.0; SEEDS="1 8 30"; STEPS=10; REPEATS=3; GAN_GEN=64x5; GAN_BATCH=32
  CASE_ARG="paper,seeds=8,epochs=3,gan_steps=300"
  SWEEP="--resolution 224 --alpha 1.0 --class-scale 0.25 --epochs 2 --repeats 2 --depthwise xla"
  GPUS=$(python -c "import jax; print(sum(d.platform == 'gpu' for d in jax.devices()))")
  PLATFORM=gpu; PIN=""; MESH_ENV=""
fi

for seeds in $SEEDS; do
  python scripts/benchmark.py train --resolution "$RES" --alpha "$ALPHA" --batch 16 --channels 3 \
    --seeds "$seeds" --mode vmapped --depthwise xla --pointwise xla --steps "$STEPS" --repeats "$REPEATS" \
    | grep '^{' >> "$OUT/train.jsonl"
done
python scripts/benchmark.py lrp --resolution "$RES" --alpha "$ALPHA" --batch 16 --channels 3 --composites epsilon \
  --depthwise xla --pointwise xla --steps "$STEPS" --repeats "$REPEATS" | grep '^{' >> "$OUT/lrp.jsonl"
python scripts/benchmark.py gan --resolution "$RES" --batch "$GAN_BATCH" --generators "$GAN_GEN" --steps "$STEPS" \
  --repeats "$REPEATS" | grep '^{' >> "$OUT/gan.jsonl"

if [ "$GPUS" -ge 2 ]; then
  # Fewer seeds than devices: seeds alone (idle devices) against each batch split over the rest.
  env $MESH_ENV python scripts/benchmark.py mesh $SWEEP --seeds 1 --data-parallel 1,0 \
    | grep '^{' >> "$OUT/mesh.jsonl"
  # One process per device on this host (jax.distributed over localhost), equal work per device.
  python scripts/benchmark.py processes $SWEEP --processes "1,$GPUS" --seeds-per-process 2 \
    --platform "$PLATFORM" $PIN | grep '^{' >> "$OUT/processes.jsonl"
fi

start=$(date +%s)
python main.py --config="configs/generative.py:$CASE_ARG" --workdir="$OUT/case" \
  --config.model.depthwise_impl=xla --config.train.progress_bar=False > "$OUT/case.log" 2>&1
echo "{\"name\": \"paper_sized_generative_case\", \"seconds\": $(( $(date +%s) - start ))}" >> "$OUT/case.jsonl"

python - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
summary = {}
for name in ("train", "lrp", "gan", "mesh", "processes", "case"):
    path = os.path.join(out, f"{name}.jsonl")
    if os.path.exists(path):
        summary[name] = [json.loads(line) for line in open(path) if line.strip()]
results = os.path.join(out, "case", "results.json")
if os.path.exists(results):
    r = json.load(open(results))
    summary["case_results"] = {"test_f1": r["splits"]["test"]["f1"], "wall_time_seconds": r["wall_time_seconds"]}
train = summary.get("train", [])
one = [m for m in train if m.get("seeds") == 1]
for m in train:
    if one and m.get("seeds", 1) > 1:
        # Wall time of N seeds relative to one seed, for the same number of steps (target at 30: < 3).
        m["wall_time_vs_one_seed"] = round(one[0]["items_per_s"] * m["seeds"] / m["items_per_s"], 2)
# The paper's study: 6 cases x 30 seeds x at most 450 epochs on 2,839 images (70/20/10 split).
# An epoch of a seed: 124 steps of 16 training images, and the validation images forward (about a
# third of a training step per image); the GAN inpainter (20,000 steps of 32) is fitted once;
# LRP explains the test images for every seed of every case. Early stopping (patience 60) ends most
# seeds well before 450 epochs, and repacking stops paying for them, so this is an upper bound.
most = max(train, key=lambda m: m.get("seeds", 0), default=None)
gan_train = [m for m in summary.get("gan", []) if m["name"].startswith("gan_train")]
lrp = summary.get("lrp", [])
if most and gan_train and lrp:
    seed_image_steps_per_epoch = 124 * 16 + 568 / 3
    train_s = 6 * 30 * 450 * seed_image_steps_per_epoch / most["items_per_s"]
    gan_s = 20000 * gan_train[0]["seconds_per_step"] * (32 / gan_train[0]["batch"])
    lrp_s = 6 * 30 * 284 / lrp[0]["items_per_s"]
    summary["paper_study_estimate"] = {
        "seeds_vmapped_in_estimate": most["seeds"],
        "train_hours_at_most": round(train_s / 3600, 2),
        "train_hours_per_100_epochs": round(train_s / 4.5 / 3600, 2),
        "gan_fit_hours": round(gan_s / 3600, 2),
        "lrp_hours": round(lrp_s / 3600, 3),
        "total_hours_at_most": round((train_s + gan_s + lrp_s) / 3600, 2),
        "tiny_sizes": os.environ.get("TINY", "0") == "1",
    }
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=2)
print(json.dumps(summary, indent=1)[:6000])
PY
