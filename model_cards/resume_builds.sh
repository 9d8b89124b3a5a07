#!/usr/bin/env bash
# Start (or resume) the long zoo builds in the background, each one that is not already running,
# and report how far every run has got. Run it at the start of a session:
#
#   bash model_cards/resume_builds.sh            # resume what is not running, then report
#   bash model_cards/resume_builds.sh --status   # only report
#
# The builds (their run folders live in $NODEZOO_BUILD, outside the work tree): none now. The
# three long builds have finished and shipped (2026-12-01): density (build_density.sh, the
# CNFs), and the two that made the 30-epoch Fashion-MNIST zoo, which shared its runs through
# build_fashion_mnist.sh's per-run lock:
#   [fashion]='OMP_NUM_THREADS=1 MODELS="mlp revnet resnet rknet odenet odenet_rnode" bash model_cards/build_fashion_mnist.sh'
#   [fashion-odenet]='OMP_NUM_THREADS=1 MODELS="odenet odenet_rnode rknet" TRAIN_ONLY=1 bash model_cards/build_fashion_mnist.sh'
# (restarting them now would only compare and republish the finished runs). A new long build
# goes into COMMANDS, ORDER and NICENESS below.
# Each writes $NODEZOO_BUILD/<build>.log (an earlier log is kept as <build>.<time>.log) and its
# PID to <build>.pid, by which a running build is recognised and can be stopped:
# kill -- -$(cat $NODEZOO_BUILD/<build>.pid).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${NODEZOO_BUILD:-$HOME/nodezoo-build}
mkdir -p "$BUILD"

# COMMANDS[build] is a bash command line; give training processes one thread each
# (OMP_NUM_THREADS=1): beside other builds on two cores it is faster in wall time (BUILD.md).
declare -A COMMANDS=()
ORDER=()
# Priorities: nice 5 leaves room for interactive work. Each build is a session of its own
# (setsid), and with the kernel's autogroup scheduling (sched_autogroup_enabled=1) every session
# gets an equal share of the CPU whatever its processes' nice values: the share is set by the
# session's autogroup nice (/proc/PID/autogroup), so both are set.
declare -A NICENESS=()

share() {  # share PID NICE: the autogroup nice of PID's session, once setsid has made it
    local i
    for i in $(seq 50); do
        if [ "$(ps -o sid= -p "$1" | tr -d ' ')" = "$1" ]; then
            echo "$2" 2>/dev/null > "/proc/$1/autogroup" || true  # a kernel without autogroups
            return
        fi
        sleep 0.1
    done
}

running() {  # running BUILD: its recorded process is alive
    local pid_file="$BUILD/$1.pid"
    [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null
}

for build in "${ORDER[@]}"; do
    if running "$build"; then
        echo "$build: running (PID $(cat "$BUILD/$build.pid"))"
    elif [ "${1:-}" = --status ]; then
        echo "$build: not running"
    else
        log="$BUILD/$build.log"
        [ -f "$log" ] && mv -n "$log" "$BUILD/$build.$(date -u +%Y%m%dT%H%M%S).log"
        # setsid: its own process group, so one kill stops the build and its children.
        WANDB_MODE=offline OMP_WAIT_POLICY=PASSIVE NODEZOO_BUILD="$BUILD" \
            setsid nohup nice -n "${NICENESS[$build]}" bash -c "${COMMANDS[$build]}" > "$log" 2>&1 < /dev/null &
        echo $! > "$BUILD/$build.pid"
        share "$!" "${NICENESS[$build]}"
        echo "$build: started (PID $!, log $log)"
    fi
done

# Progress: every run folder's last.ckpt (epoch, step) and whether its build marked it done.
# "unfinished" says nothing about a process: a running build's runs and runs left by a stopped
# build or by a benchmark (benchmarks write no done marker) all read so; the lines above say
# which builds are running.
python - "$BUILD" <<'EOF'
import sys
from pathlib import Path

import torch

root = Path(sys.argv[1])
for ckpt in sorted(root.glob("*/*/checkpoints/last.ckpt")):
    run = ckpt.parents[1]
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        where = f"epoch {state['epoch']}, step {state['global_step']}"
    except Exception as error:  # being written right now, or torn: say so, do not stop
        where = f"unreadable ({type(error).__name__})"
    done = "done" if (run / "done").exists() else "unfinished"
    print(f"{run.relative_to(root)}: {done}, {where}")
EOF
