#!/usr/bin/env bash
# The GPU checks of nodezoo in one command, for a lent GPU machine (the session `run` tool runs it
# in a copy of the work tree; nothing there can reach the internet):
#
#   pip download --no-deps -d .device_wheels pytest pluggy iniconfig exceptiongroup tomli \
#       jsonargparse docstring-parser typeshed-client safetensors      # here, once (ignored by git)
#   mkdir -p .device_data && cp /usr/share/datasets/fashion-mnist/train-*.gz .device_data/
#   run: bash benchmarks/device_check.sh      carry: [".device_wheels", ".device_data"]  (~5 min)
#
# 1. what the machine has; 2. tests/test_cuda.py: CPU and CUDA give the same numbers (solvers in
# every family and gradient mode, the regularised warm-started ODE block, every model family, a
# pretrained zoo model) and `nodezoo fit` trains on the GPU; 3. benchmarks/solvers.py --device cuda
# --quick: nodezoo against torchdiffeq on the GPU (wall clock; CPU time does not see the GPU);
# 4. with .device_data, benchmarks/classifier_epoch.py --device cuda: ODE-Net (cold and warm
# start, and through torchdiffeq) against the ResNet per training step on the GPU.
# Results go to $OUT (the run tool brings them back) or /tmp/device_check.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device_check}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())'
} 2>&1 | tee "$OUT/machine.txt"

if [ -d .device_wheels ]; then  # what the machine lacks of the tests' pure-Python needs
    for module in pytest jsonargparse safetensors; do
        python -c "import $module" 2>/dev/null ||
            pip install -q --no-index --find-links .device_wheels "$module" 2>&1 | tail -2
    done
    python -c 'import jsonargparse' 2>/dev/null &&
        pip install -q --no-index --find-links .device_wheels 'jsonargparse[signatures]' 2>&1 | tail -2
fi

timeout 420 python -m pytest -q -p no:cacheprovider -rs tests/test_cuda.py 2>&1 | tee "$OUT/test_cuda.txt"
tests=${PIPESTATUS[0]}

libraries="nodezoo torchdiffeq"
python -c 'import torchode' 2>/dev/null && libraries="$libraries torchode"
# shellcheck disable=SC2086
timeout 240 python benchmarks/solvers.py --device cuda --quick --libraries $libraries \
    --json "$OUT/solvers_cuda.json" > "$OUT/solvers_cuda.md" 2> "$OUT/solvers_cuda.log"
echo "solvers.py exit $? ($OUT/solvers_cuda.md)"

if [ -d .device_data ]; then
    timeout 180 python benchmarks/classifier_epoch.py --device cuda --data .device_data \
        --models odenet odenet-warm odenet-torchdiffeq resnet --steps 30 --warmup 3 \
        > "$OUT/classifier_epoch_cuda.md" 2>&1
    echo "classifier_epoch.py exit $? ($OUT/classifier_epoch_cuda.md)"
fi
exit "$tests"
