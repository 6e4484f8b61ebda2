#!/usr/bin/env bash
# Recipe of the shipped default model (models/default): the per-job MLP ensemble trained on
# the MISO A100 measurements, 20% of the mixes (all 5 permutations of each) held out.
# Run from the repository root; needs ../shared/datasets/miso-a100.
set -euo pipefail
cargo run --release -- train --data ../shared/datasets/miso-a100 --arch mlp \
  --epochs 100 --ensemble 5 --hidden 256,256 --lr 0.001 --batch 256 --seed 1 --val-frac 0.2 \
  --out models/default
# Its 90% prediction intervals: the same recipe retrained once per model family without it
# (leave-one-family-out), conformal margins from the held-out families' errors, written into
# models/default/model.json (about 5 minutes).
cargo run --release -- evaluate --data ../shared/datasets/miso-a100 --model models/default \
  --lofo --calibrate --level 0.9
