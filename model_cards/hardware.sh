#!/usr/bin/env bash
# The machine as the zoo cards name it (the builds' default HARDWARE): the GPUs if nvidia-smi
# sees any, else the CPU model and core count (all cores: nproc alone counts OMP_NUM_THREADS),
# read on the machine that runs the build.
set -euo pipefail
gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || true)
if [ -n "$gpus" ]; then
    echo "$(echo "$gpus" | wc -l) x $(echo "$gpus" | head -1)"
else
    cpu=$(sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo 2>/dev/null | head -1)
    echo "$(nproc --all) CPU cores (${cpu:-unknown model}), no GPU"
fi
