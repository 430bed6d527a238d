#!/usr/bin/env bash
# The GPU figures of issue 16 in one run of under 8 minutes, on a machine with a GPU and kseg's environment
# (TensorFlow with CUDA: pip install -e ".[gpu]"): XLA + bfloat16 inference at batch 16 and 32, 480x480, for
# fcn/psp/deeplab resnet101 and mask_rcnn_fpn_resnet50_v1b_coco, a semantic training step rate, and torchvision
# with torch.compile on the same GPU where torch is installed. Results land in $OUT (default benchmarks/gpu-out):
# JSON per part and summary.txt; copy the figures, with the device named, into benchmarks/RESULTS.md.
#
#     PYTHON=.venv/bin/python TORCH_PYTHON=python3 bash benchmarks/gpu.sh
#
# GluonCV's published V100 figures (480x480, batch 32) the targets are measured against: fcn_resnet101 32.5,
# psp_resnet101 26.6, deeplab_resnet101 25.8, deeplab_resnet152 20.4 img/s.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
TORCH_PYTHON=${TORCH_PYTHON:-python3}
OUT=${OUT:-benchmarks/gpu-out}
mkdir -p "$OUT"
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$OUT/summary.txt"; }

"$PYTHON" -c "import tensorflow as tf; gpus = tf.config.list_physical_devices('GPU'); \
assert gpus, 'TensorFlow sees no GPU'; print(tf.config.experimental.get_device_details(gpus[0]))" \
    | tee "$OUT/device.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$OUT/device.txt" || true

stamp "semantic inference: XLA + mixed_bfloat16, batch 16 and 32, 480x480"
"$PYTHON" tools/benchmark.py fcn_resnet101_voc psp_resnet101_voc deeplab_resnet101_voc deeplab_resnet152_voc \
    --batch-sizes 16,32 --size 480x480 --precision mixed_bfloat16 --xla --warmup 3 --iters 10 \
    --json "$OUT/semantic_inference.json" | tee -a "$OUT/summary.txt"

stamp "Mask R-CNN inference: XLA + mixed_bfloat16, batch 16, 480x480"
"$PYTHON" tools/benchmark.py mask_rcnn_fpn_resnet50_v1b_coco --batch-sizes 16 --size 480x480 \
    --precision mixed_bfloat16 --xla --warmup 2 --iters 5 --json "$OUT/mask_rcnn_inference.json" \
    | tee -a "$OUT/summary.txt" || stamp "Mask R-CNN inference failed (see above)"

stamp "semantic training step: XLA + mixed_bfloat16, resnet101, batch 16, 480x480"
"$PYTHON" benchmarks/train_speed.py --models fcn,psp,deeplab --backbone resnet101 --batch-size 16 \
    --precision mixed_bfloat16 --xla --warmup 2 --iters 10 --no-gluoncv --no-write | tee -a "$OUT/summary.txt"
stamp "Mask R-CNN training step: not measured (kseg has no Mask R-CNN training yet: issue 14)"

if "$TORCH_PYTHON" -c "import torch, torchvision; assert torch.cuda.is_available()" 2>/dev/null; then
    for model in fcn_resnet101 deeplabv3_resnet101; do
        stamp "torchvision $model: torch.compile + bf16 autocast, batch 32, 480x480"
        "$TORCH_PYTHON" benchmarks/torch_bench.py "$model" --device cuda --bf16 --compile --channels-last \
            --batch-size 32 --size 480x480 --warmup 3 --iters 10 --json "$OUT/torch_$model.json" \
            | tee -a "$OUT/summary.txt" || stamp "torchvision $model failed"
    done
else
    stamp "torchvision: not measured (no torch with CUDA under $TORCH_PYTHON)"
fi
stamp "done"
