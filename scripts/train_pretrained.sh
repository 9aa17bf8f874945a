#!/usr/bin/env bash
# Rebuild the bundled checkpoints in checkpoints/ with the project's own command line.
# Each run records its command, device, training time and held-out metrics in its metadata;
# the README's table lists what each one reached. One thread per run (THREADS=N to change):
# run two at once on a two-core machine. About 20 minutes per model on a quiet 2-core box.
#
#   bash scripts/train_pretrained.sh            # all three
#   bash scripts/train_pretrained.sh lstm       # just one
set -euo pipefail
cd "$(dirname "$0")/.."

common=(--corpus tiny-shakespeare --layers 2 --hidden 288 --embed 64 --seq-len 128
        --batch-size 64 --lr 4e-3 --schedule cosine --warmup-steps 100 --min-lr-ratio 0.05
        --grad-clip 1.0 --eval-every 500 --sample-every 0 --seed 1337)

train() {  # cell, steps, dropout
  python -m charrnn train "${common[@]}" --threads "${THREADS:-1}" --cell "$1" --steps "$2" --dropout "$3" \
    --out "checkpoints/$1-2x288-shakespeare.safetensors"
  python -m charrnn eval "checkpoints/$1-2x288-shakespeare.safetensors" --corpus tiny-shakespeare \
    --record
}

cells=("$@")
[ ${#cells[@]} -gt 0 ] || cells=(lstm gru rnn)
for cell in "${cells[@]}"; do
  case "$cell" in
    lstm) train lstm 3000 0.1 ;;
    gru) train gru 3000 0.1 ;;
    rnn) train rnn 3000 0.0 ;;
    *) echo "error: unknown cell $cell (lstm, gru or rnn)" >&2; exit 2 ;;
  esac
done
