#!/usr/bin/env bash
# Build the CNF zoo folders (cnf-checkerboard, cnf-two-spirals, cnf-8gaussians, cnf-digits) in one
# command: train each recipe under recipes/density/ with nodezoo fit, run benchmarks/cnf.py (zuko's
# NSF, MAF and CNF beside nodezoo's CNF: same data, budget and parameter count) for the comparison
# on the cards, and publish each folder with its test NLL, picture and that comparison.
#
#   bash model_cards/build_density.sh                                  # the recipes' own budgets
#   STEPS=200 EPOCHS=5 RUNS=/tmp/density OUT=/tmp/zoo REPORT=/tmp/density/report \
#       bash model_cards/build_density.sh                              # a shortened proof run
#
# Budget: the recipe's (2-D: max_steps 5000 of batch 500; digits: max_epochs 300 of batch 200),
# or STEPS (2-D) / EPOCHS (digits) to shorten it; a shortened card says so ("Shortened run"). The
# baselines get the same number of Adam steps of the same batch. A run that stops is resumed from
# its last.ckpt when the script is started again; runs live in one folder per budget, and in it
# one per model and recipe content (<data>_<hash of the recipe's parsed settings>), so a
# finished short run is never extended or published as a longer one, and a run of an earlier
# recipe is never resumed or published as the current one. Test metrics are measured by
# publish with the code of `nodezoo evaluate`: 2-D, a fresh sample of 10,000 points from the data
# module's test seed (seed + 2); digits, the 397 test images with the dequantisation noise of
# seed 0. HARDWARE is written on the cards.
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-}
EPOCHS=${EPOCHS:-}
RUNS=${RUNS:-runs/zoo/density_${STEPS:-full}steps_${EPOCHS:-full}epochs}
OUT=${OUT:-model_cards}
REPORT=${REPORT:-reports/density_zoo}
HARDWARE=${HARDWARE:-"$(bash model_cards/hardware.sh), 1 thread"}
MODELS=${MODELS:-"checkerboard two_spirals 8gaussians digits"}
BASELINES=${BASELINES:-"nodezoo-cnf zuko-cnf zuko-nsf zuko-maf"}
export OMP_NUM_THREADS=1  # the fields are small: a second thread only contends (see the recipes)

recipe_value() {  # recipe_value RECIPE KEY... -> the value, or nothing
    python -c 'import sys, yaml
v = yaml.safe_load(open(sys.argv[1]))
for k in sys.argv[2:]:
    v = (v or {}).get(k)
print("" if v is None else v)' "$@"
}

command="bash model_cards/build_density.sh"
[ -n "$EPOCHS" ] && command="EPOCHS=$EPOCHS $command"
[ -n "$STEPS" ] && command="STEPS=$STEPS $command"
mkdir -p "$REPORT"

for model in $MODELS; do
    recipe="recipes/density/cnf_$model.yaml"
    name="cnf-${model//_/-}"
    dir="$RUNS/${model}_$(python -c 'import hashlib, json, sys, yaml
print(hashlib.sha256(json.dumps(yaml.safe_load(open(sys.argv[1])), sort_keys=True).encode()).hexdigest()[:8])' "$recipe")"
    budget=()
    facts=()
    batch=$(recipe_value "$recipe" data init_args batch_size)
    if [ "$model" = digits ]; then
        epochs=${EPOCHS:-$(recipe_value "$recipe" trainer max_epochs)}
        budget=(--trainer.max_epochs "$epochs")
        facts=(--fact "run/max_epochs=$(recipe_value "$recipe" trainer max_epochs)")
        train=$(python -c 'import sys, yaml
from nodezoo.data.density import DigitsDensityDataModule
args = yaml.safe_load(open(sys.argv[1]))["data"]["init_args"]
print(len(DigitsDensityDataModule(**args).pixels("train")))' "$recipe")
        per_epoch=$(((train + batch - 1) / batch))
        steps=$((epochs * per_epoch))
        bench=(--datasets digits --hidden "$(recipe_value "$recipe" model init_args hidden)"
            --layers "$(recipe_value "$recipe" model init_args layers)" --steps-per-epoch "$per_epoch")
    else
        steps=${STEPS:-$(recipe_value "$recipe" trainer max_steps)}
        budget=(--trainer.max_steps "$steps")
        facts=(--fact "run/max_steps=$(recipe_value "$recipe" trainer max_steps)")
        n_train=$(recipe_value "$recipe" data init_args n_train)
        per_epoch=$((n_train / batch))
        bench=(--datasets "$(recipe_value "$recipe" data init_args dataset)"
            --hidden "$(recipe_value "$recipe" model init_args hidden)"
            --layers "$(recipe_value "$recipe" model init_args layers)"
            --steps-per-epoch "$per_epoch" --n-test "$(recipe_value "$recipe" data init_args n_test)")
    fi

    # 1. Train (resumable).
    start=$(date +%s)
    if [ ! -f "$dir/done" ]; then
        resume=()
        [ -f "$dir/checkpoints/last.ckpt" ] && resume=(--ckpt_path last)
        nodezoo fit --config "$recipe" "${budget[@]}" --trainer.default_root_dir "$dir" \
            --trainer.logger.init_args.name "$name" "${resume[@]}"
        touch "$dir/done"
    fi
    echo "$name: training $(($(date +%s) - start)) s (this invocation)"

    # 2. Baselines at the same budget (skipped when their table exists).
    start=$(date +%s)
    tag="${model}_${steps}steps"
    if [ ! -f "$REPORT/cnf_$tag.md" ]; then
        python benchmarks/cnf.py "${bench[@]}" --models $BASELINES --steps "$steps" \
            --batch-size "$batch" --tag "$tag" --results-dir "$REPORT" --resume-dir "$RUNS"
    fi
    echo "$name: baselines $(($(date +%s) - start)) s"
    {
        echo "Made by \`$command\` (benchmarks/cnf.py; JSON in \`$REPORT/cnf_$tag.json\`): every"
        echo "model trained from scratch on the same batches for the same budget, parameter counts"
        echo "matched to nodezoo's CNF. The nodezoo-cnf row is the benchmark's own run of this"
        echo "architecture, not these weights (whose test metrics are in Results)."
        tail -n +2 "$REPORT/cnf_$tag.md"
    } > "$REPORT/$model.card.md"

    # 3. Publish: test metrics measured from last.ckpt, the picture drawn, the comparison added.
    start=$(date +%s)
    nodezoo publish "$dir/checkpoints/last.ckpt" --out "$OUT/$name" --name "$name" \
        --recipe "$recipe" --comparison "$REPORT/$model.card.md" "${facts[@]}" \
        --fact "run/command=$command" --fact "run/hardware=$HARDWARE" --fact run/seed=0 \
        --fact "run/notes=Trained by model_cards/build_density.sh with $recipe (nodezoo fit, ${budget[*]}); the weights are the end of training (last.ckpt). Test metrics use the exact trace; recompute them with nodezoo evaluate $name (add --seed S for another test sample: 2-D, fresh points from seed S; digits, the same test images dequantised with seed S). Wall-clock times are from a machine that may have run other jobs at the same time."
    echo "$name: publish $(($(date +%s) - start)) s"
done
