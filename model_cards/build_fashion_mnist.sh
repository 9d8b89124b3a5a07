#!/usr/bin/env bash
# Build the Fashion-MNIST zoo folders in one command: train each model with its recipe, compare
# them (nodezoo compare), and publish each folder with that comparison on its card. The five
# architectures (ODE-Net, MLP, RevNet, RK-Net, ResNet) and odenet_rnode (the ODE-Net recipe with
# kinetic regularisation and warm-started solves); zoo names are kebab case
# (odenet_rnode.yaml -> odenet-rnode-fashion-mnist).
#
#   EPOCHS=4 bash model_cards/build_fashion_mnist.sh      # what the shipped folders used
#   bash model_cards/build_fashion_mnist.sh               # the recipes' full 30 epochs
#
# Every model gets the same budget (EPOCHS, the recipe's optimiser, schedule and batch). A run
# that stops is resumed from its last.ckpt when the script is started again. Runs live in one
# folder per EPOCHS and recipe content: the one-cycle schedule spans the whole run, so a finished
# short run is never extended or published as a longer one, and a run of an earlier recipe is
# never resumed or published as the current one (the folder name ends with a hash of the five
# recipes' parsed settings, so comments can change freely; any other model's run keeps its own
# recipe's hash in recipe.sha256 and refuses to resume under another). Test metrics are measured
# by publish with the same code as `nodezoo evaluate`. HARDWARE is written on the cards.
# One process trains a run at a time (flock on the run folder): a second build started beside
# this one (e.g. MODELS=odenet_rnode TRAIN_ONLY=1 ..., training a model in parallel) waits for
# the run it reaches, then finds it done. Each model is published as soon as it finishes (its
# card without the comparison); TRAIN_ONLY=1 stops after that, before the comparison.
set -euo pipefail
# Waiting OpenMP threads spin by default and stall the ODE-Net's many small parallel regions on
# shared cores (benchmarks/README.md, "Threads on a shared CPU": 2.7-4.4 vs 0.3 CPU s/step).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
cd "$(dirname "$0")/.."

EPOCHS=${EPOCHS:-30}
# Runs live outside the work tree, so a fresh checkout of the repo can resume them.
recipes_id() {  # a hash of the parsed settings of the recipes given
    python -c 'import hashlib, json, sys, yaml
settings = [yaml.safe_load(open(path)) for path in sys.argv[1:]]
print(hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8])' "$@"
}
RECIPES_ID=$(recipes_id recipes/fashion_mnist/{odenet,mlp,revnet,rknet,resnet}.yaml)
RUNS=${RUNS:-${NODEZOO_BUILD:-$HOME/nodezoo-build}/fashion_mnist_${EPOCHS}ep_$RECIPES_ID}
OUT=${OUT:-model_cards}
REPORT=${REPORT:-reports/fashion_mnist_zoo}
HARDWARE=${HARDWARE:-$(bash model_cards/hardware.sh)}
MODELS=${MODELS:-"odenet mlp revnet rknet resnet odenet_rnode"}
BASE_MODELS=" odenet mlp revnet rknet resnet "  # the ones RECIPES_ID covers

zoo_name() { echo "${1//_/-}-fashion-mnist"; }

publish() {  # publish MODEL [extra publish args...]
    local model=$1 recipe_epochs
    shift
    recipe_epochs=$(python -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["trainer"]["max_epochs"])' \
        "recipes/fashion_mnist/$model.yaml")
    nodezoo publish "$RUNS/$model/checkpoints/last.ckpt" --out "$OUT/$(zoo_name "$model")" \
        --name "$(zoo_name "$model")" --recipe "recipes/fashion_mnist/$model.yaml" \
        --fact "run/command=EPOCHS=$EPOCHS bash model_cards/build_fashion_mnist.sh" \
        --fact "run/hardware=$HARDWARE" --fact run/seed=0 --fact "run/max_epochs=$recipe_epochs" \
        --fact "run/notes=Trained by model_cards/build_fashion_mnist.sh with recipes/fashion_mnist/$model.yaml and --trainer.max_epochs $EPOCHS (every Fashion-MNIST zoo model had the same budget); the weights are the end of training (last.ckpt). Wall-clock times are from a 2-core machine that may have run other jobs at the same time." \
        "$@"
}

for model in $MODELS; do
    dir="$RUNS/$model"
    mkdir -p "$dir"
    (
        flock 9
        if [ ! -f "$dir/done" ]; then
            if [[ "$BASE_MODELS" != *" $model "* ]]; then
                id=$(recipes_id "recipes/fashion_mnist/$model.yaml")
                if [ -f "$dir/recipe.sha256" ] && [ "$(cat "$dir/recipe.sha256")" != "$id" ]; then
                    echo "$dir was started with another recipes/fashion_mnist/$model.yaml;" \
                        "move it away to train this one from the start." >&2
                    exit 3
                fi
                echo "$id" > "$dir/recipe.sha256"
            fi
            resume=()
            if [ -f "$dir/checkpoints/last.ckpt" ]; then
                resume=(--ckpt_path last)
            fi
            nodezoo fit --config "recipes/fashion_mnist/$model.yaml" --trainer.max_epochs "$EPOCHS" \
                --trainer.default_root_dir "$dir" \
                --trainer.logger.init_args.name "$(zoo_name "$model")" "${resume[@]}"
            touch "$dir/done"
            # Publish at once (test metrics, no comparison yet): a finished model lands in the
            # work tree to be committed even if the machine is lost before the others finish.
            publish "$model"
        fi
    ) 9> "$dir/.lock"
done
if [ -n "${TRAIN_ONLY:-}" ]; then
    exit 0
fi

# Test metrics first (publish measures them), then the comparison over the published folders,
# then the folders again with the comparison on each card.
folders=()
for model in $MODELS; do
    publish "$model"
    folders+=("$OUT/$(zoo_name "$model")")
done
nodezoo compare "${folders[@]}" --out "$REPORT" --memory-sweep --limit-batches all
{
    echo "Made by \`EPOCHS=$EPOCHS bash model_cards/build_fashion_mnist.sh\` (\`nodezoo compare\`;"
    echo "plots and CSV in \`$REPORT/\`). Same recipe budget for every model; test set of 10,000 images."
    echo
    cat "$REPORT/table.md"
} > "$REPORT/card_section.md"
for model in $MODELS; do
    publish "$model" --comparison "$REPORT/card_section.md"
done
