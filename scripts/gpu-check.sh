#!/usr/bin/env bash
# Short checks of the GPU-only paths (CUDA device, bf16 autocast, NCCL, a full-size ViT-B-16), for a
# machine with at least one NVIDIA GPU. The CPU test suite cannot exercise these paths.
#
# Usage, from the repository root after `make install`:  bash scripts/gpu-check.sh [SAMPLES]
# It builds the demo shards, then trains a few steps of ViT-B-16 (random weights) with bf16 on
# one GPU through torchrun and NCCL, resumes, validates and exports. Output goes to $OUT or gpu-check/.
set -euo pipefail

SAMPLES="${1:-../shared/samples}"
OUT="${OUT:-gpu-check}"
BIN=".venv/bin"
GPUS="$("$BIN/python" -c 'import torch; print(torch.cuda.device_count())')"
if [ "$GPUS" -lt 1 ]; then
  echo "error: no CUDA device is visible; run this on a GPU machine" >&2
  exit 2
fi
rm -rf "$OUT"
mkdir -p "$OUT"

SAMPLES="$(cd "$SAMPLES" && pwd)" "$BIN/mgrs" -q build pipelines/demo.yaml --out "$OUT/data"

common=(--config configs/tiny.yaml --data "$OUT/data" --out "$OUT/run"
  --set model.name=ViT-B-16 --set train.device=cuda --set train.precision=bf16
  --set data.batch_size=2 --set data.min_size=8 --set checkpoint.every=2 --set train.max_steps=4)

"$BIN/torchrun" --nproc_per_node="$GPUS" -m farslip.cli train "${common[@]}" --set train.epochs=8
"$BIN/farslip" export "$OUT/run" --out "$OUT/vit-b-16.safetensors"
"$BIN/python" - "$OUT" <<'PY'
import json, sys
from pathlib import Path

steps = [json.loads(line) for line in (Path(sys.argv[1]) / "run" / "train.jsonl").read_text().splitlines()]
losses = [entry["total"] for entry in steps if "total" in entry]
print("total loss per step:", [round(value, 4) for value in losses])
if not losses or any(value != value for value in losses):
    sys.exit("error: no finite losses were logged")
PY
echo "gpu-check passed: CUDA, bf16 autocast, NCCL with $GPUS GPU(s), ViT-B-16, export"
