#!/usr/bin/env bash
# The measured run behind docs/coca.md's captioning section: CoCa (tiny preset) trained from scratch with
# `vl train coca` on 1000 synthetic scenes for 1000 steps (batch 16), then `vl eval coca --task captioning` (greedy)
# on the test split and `vl caption coca` on two test images, then the eval with 3 beams (printed only).
# Writes docs/coca-captioning.json (the greedy eval report). Needs `npm run build` first. ~3 minutes on 2 cores (wasm).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
WORK=${WORK:-$(mktemp -d)}
VL="node $ROOT/packages/cli/dist/bin.js"
$VL data synth --out "$WORK/data" --images 1000 --seed 0 --size 32 --captions 2 --quiet
time $VL train coca --data "$WORK/data" --out "$WORK/coca" --batch-size 16 --max-steps 1000 --lr 1e-3 --seed 0 --backend wasm --quiet
time $VL eval coca --checkpoint "$WORK/coca" --data "$WORK/data/test.jsonl" --task captioning --beams 1 --max-length 20 \
  --backend wasm --quiet --out "$ROOT/docs/coca-captioning.json"
npx prettier --write "$ROOT/docs/coca-captioning.json" > /dev/null
$VL caption coca --checkpoint "$WORK/coca" --beams 1 --max-length 20 --backend wasm \
  $(ls "$WORK"/data/images/test/* | head -2)
$VL eval coca --checkpoint "$WORK/coca" --data "$WORK/data/test.jsonl" --task captioning --beams 3 --max-length 20 \
  --backend wasm --quiet | head -1
