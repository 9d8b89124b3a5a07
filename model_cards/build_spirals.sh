#!/usr/bin/env bash
# Build the spiral zoo folders (latent-ode-spirals, latent-ode-odernn-spirals, rnn-spirals) in one
# command: train every Table 2 row with benchmarks/spirals_table2.py, evaluate Table 2 from the
# checkpoints, and publish the folders with that table on their cards.
#
#   bash model_cards/build_spirals.sh
#
# Rows (4000 steps each, loss on the observed points and the 100 after the window): the RNN
# without and with Δt inputs, and the Latent ODE with the RNN and the ODE-RNN encoder. Then the
# same RNN(Δt) and Latent ODE trained on the observed points only (--reconstruct-only), the
# protocol of torchdiffeq's example, into a second table. A model whose checkpoint is already in
# CKPTS is not trained again. Test metrics are measured by publish on 1000 fresh spirals from
# TEST_SEED (the same code as `nodezoo evaluate --seed`).
set -euo pipefail
# Waiting OpenMP threads spin by default and stall the ODE-Net's many small parallel regions on
# shared cores (benchmarks/README.md, "Threads on a shared CPU": 2.7-4.4 vs 0.3 CPU s/step).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
cd "$(dirname "$0")/.."

CKPTS=${CKPTS:-runs/spirals_table2}
OUT=${OUT:-model_cards}
REPORT=${REPORT:-reports/spirals_table2}
TEST_SEED=${TEST_SEED:-12345}
HARDWARE=${HARDWARE:-"$(bash model_cards/hardware.sh), 1 thread"}
ROWS="rnn_no_gaps rnn latent_ode latent_ode_odernn"
RECONSTRUCT_ROWS="rnn latent_ode"

train() {  # train CKPT_DIR MODEL [extra benchmark args...]
    local dir=$1 model=$2
    shift 2
    if [ ! -f "$dir/$model.ckpt" ]; then
        python benchmarks/spirals_table2.py --models "$model" --ckpt-dir "$dir" \
            --test-seed "$TEST_SEED" --out "$dir/$model.results.json" "$@"
    fi
}
for model in $ROWS; do train "$CKPTS" "$model"; done
for model in $RECONSTRUCT_ROWS; do train "$CKPTS/reconstruct_only" "$model" --reconstruct-only; done

table() {  # table CKPT_DIR NAME TITLE MODELS...
    local dir=$1 name=$2 title=$3
    shift 3
    python benchmarks/spirals_table2.py --from-checkpoints "$dir" --models "$@" \
        --test-seed "$TEST_SEED" --out "$REPORT/$name.json"
    {
        echo "$title"
        echo
        python -c 'import json, sys; print(json.load(open(sys.argv[1]))["markdown"])' "$REPORT/$name.json"
    } > "$REPORT/$name.md"
}
mkdir -p "$REPORT"
table "$CKPTS" results "Predictive RMSE on the 100 points after the observation window (Table 2 of Chen et al.
2018), 1000 test spirals from seed $TEST_SEED; made by \`bash model_cards/build_spirals.sh\`. Every
row: 4000 steps, loss on the observed points and the 100 points after the window." $ROWS
table "$CKPTS/reconstruct_only" reconstruct_only "The same, trained on the observed points only
(\`--reconstruct-only\`, the protocol of torchdiffeq's example): extrapolation is never trained." \
    $RECONSTRUCT_ROWS
cat "$REPORT/results.md" > "$REPORT/table.md"
{ echo; cat "$REPORT/reconstruct_only.md"; } >> "$REPORT/table.md"

publish() {  # publish MODEL NAME RECIPE
    local model=$1 name=$2 recipe=$3
    local seconds
    seconds=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["time/total_s"])' \
        "$CKPTS/$model.json")
    nodezoo publish "$CKPTS/$model.ckpt" --out "$OUT/$name" --name "$name" --recipe "$recipe" \
        --seed "$TEST_SEED" --comparison "$REPORT/table.md" \
        --fact "run/command=bash model_cards/build_spirals.sh" \
        --fact "run/hardware=$HARDWARE" --fact run/seed=0 --fact "time/total_s=$seconds" \
        --fact "paper/test/rmse_n30=$4" --fact "paper/test/rmse_n50=$5" \
        --fact "paper/test/rmse_n100=$6" \
        --fact "run/notes=Trained by benchmarks/spirals_table2.py (called by model_cards/build_spirals.sh), not by nodezoo fit: 4000 Adam steps (batch 100, lr 0.01 with a cosine schedule, seed 0) on 1000 training spirals, one model for all n (each series' number of observed points drawn from {30, 50, 100}), with the loss on the observed points and the 100 noisy points after the window. recipe.yaml has the same model and data init args (it trains the same model with nodezoo fit, with other logging and validation settings). Results: predictive RMSE of the mean prediction against the true trajectory at the 100 points after the window, on 1000 fresh spirals from seed $TEST_SEED (the same spirals for every n); the Paper column is Table 2 of Chen et al. (2018). Recompute with nodezoo evaluate $name --seed $TEST_SEED."
}

publish latent_ode latent-ode-spirals recipes/spirals/latent_ode.yaml 0.1642 0.1502 0.1346
publish latent_ode_odernn latent-ode-odernn-spirals recipes/spirals/latent_ode_odernn.yaml \
    0.1642 0.1502 0.1346
publish rnn rnn-spirals recipes/spirals/rnn.yaml 0.3937 0.3202 0.1813
