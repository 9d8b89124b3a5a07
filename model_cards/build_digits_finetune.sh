#!/usr/bin/env bash
# Build the fine-tuned zoo folder odenet-fashion-mnist-to-digits in one command: fine-tune the
# zoo's Fashion-MNIST ODE-Net on scikit-learn's digits with recipes/finetune/, train the same
# model from scratch with the same recipe as the baseline, compare them and publish the
# fine-tuned folder with that comparison on its card.
#
#   bash model_cards/build_digits_finetune.sh
set -euo pipefail
# Waiting OpenMP threads spin by default and stall the ODE-Net's many small parallel regions on
# shared cores (benchmarks/README.md, "Threads on a shared CPU": 2.7-4.4 vs 0.3 CPU s/step).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
cd "$(dirname "$0")/.."

RECIPE=recipes/finetune/odenet_fashion_mnist_to_digits.yaml
# One run folder per pretrained weights and recipe: after odenet-fashion-mnist is rebuilt or the
# recipe changes, the fine-tune is trained again instead of being skipped by the old run's `done`
# marker.
RUN_ID=$(cat model_cards/odenet-fashion-mnist/model.safetensors "$RECIPE" | sha256sum | cut -c1-12)
RUNS=${RUNS:-runs/finetune/$RUN_ID}
OUT=${OUT:-model_cards}
REPORT=${REPORT:-reports/digits_finetune}
HARDWARE=${HARDWARE:-$(bash model_cards/hardware.sh)}

fit() {  # fit RUN_NAME [overrides...]
    local dir="$RUNS/$1"
    shift
    if [ ! -f "$dir/done" ]; then
        nodezoo fit --config "$RECIPE" --trainer.default_root_dir "$dir" "$@"
        touch "$dir/done"
    fi
}
fit odenet_fashion_mnist_to_digits
fit odenet_digits_from_scratch --model.init_args.pretrained null \
    --trainer.logger.init_args.name odenet-digits-from-scratch

# test metrics into each run's summary.json (RunSummary), then the comparison over the runs
for run in odenet_fashion_mnist_to_digits odenet_digits_from_scratch; do
    nodezoo test --config "$RECIPE" --ckpt_path "$RUNS/$run/checkpoints/last.ckpt" \
        --trainer.default_root_dir "$RUNS/$run" --trainer.logger false
done
nodezoo compare "$RUNS/odenet_fashion_mnist_to_digits" "$RUNS/odenet_digits_from_scratch" \
    --out "$REPORT" --no-tolerance-sweep
{
    echo "Fine-tuned from odenet-fashion-mnist against the same recipe from random weights"
    echo "(\`--model.init_args.pretrained null\`), both 10 epochs; made by"
    echo "\`bash model_cards/build_digits_finetune.sh\` (\`nodezoo compare\`), 397 test digits."
    echo
    cat "$REPORT/table.md"
} > "$REPORT/card_section.md"
nodezoo publish "$RUNS/odenet_fashion_mnist_to_digits/checkpoints/last.ckpt" \
    --out "$OUT/odenet-fashion-mnist-to-digits" --name odenet-fashion-mnist-to-digits \
    --recipe "$RECIPE" --comparison "$REPORT/card_section.md" \
    --fact "run/command=bash model_cards/build_digits_finetune.sh" \
    --fact "run/hardware=$HARDWARE" --fact run/seed=0 \
    --fact "run/notes=Fine-tuned by model_cards/build_digits_finetune.sh: nodezoo fit --config $RECIPE (pretrained: odenet-fashion-mnist, 10 epochs of 1,200 digits, AdamW one-cycle to lr 3e-3); the weights are the end of training (last.ckpt)."
