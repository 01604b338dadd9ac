#!/usr/bin/env bash
# The VM part of ci/test.sh: everything that needs another kernel, in one
# boot per kernel. Runs INSIDE the VM (ci/vm/run.sh ... -- bash ci/vm/suite.sh
# PART), from the repository, with the binaries built on the host.
#
#   suite.sh ipvlan SOCKET_TEST   a stock kernel with ipvlan and 802.1Q:
#       the ipvlan scenarios on the emulator and on real dockerd (the
#       recommended deployment, plugin-recommended, among them), then the
#       driver's socket tests (the test binary SOCKET_TEST)
#   suite.sh no-ipvlan            a kernel booted without ipvlan
#       (run.sh --deny-module ipvlan): the scenarios that need its absence
#
# First the kernel is checked (it must really have, or really lack, what the
# part is about: a VM whose modules did not load fails, it never turns tests
# into skips), and HARNESS_REQUIRE forbids those scenarios to skip. Then the
# part's two scenario sets run one after the other, one harness per engine
# (each running $SUITE_JOBS scenarios at once, default 1; their output lines
# start with [ENGINE]). Side by side they took as long (the dockerd set
# 1294 s beside the emulator's 558 s) and starved each other: a zero-loss
# probe lost packets, and dockerd-restart-ipvlan's restarted container never
# came back. The socket tests come last, alone, for the same reason.
# Out, in $IBVM_OUT (ci/vm/run.sh --out copies it to the host):
#   trials.jsonl                 the trial log of this kernel (harness skips check)
#   reports-ENGINE/*.json, html-ENGINE/, junit-ENGINE.xml
#   runs/                        logs of failed scenarios
#   set-ENGINE.log, socket-tests.log, failures.txt (the FAILED lines of both)
# Exit status: 0 when every part passed, else 1 (every part still runs).
set -uo pipefail
part=${1:?usage: suite.sh ipvlan SOCKET_TEST | no-ipvlan}
out=${IBVM_OUT:?run this inside the VM (ci/vm/run.sh)}
harness=${HARNESS_BIN:-target/debug/harness}
jobs=${SUITE_JOBS:-1}

export HARNESS_RUN_DIR=/tmp/ibvm-harness-runs
export HARNESS_TRIAL_LOG=$out/trials.jsonl
"$harness" skips start "$HARNESS_TRIAL_LOG" || exit 1

t0=$(date +%s)
step() { echo "suite.sh: $* ($(($(date +%s) - t0)) s)" >&2; }

# harness run for every scenario that needs CAPABILITY and runs on ENGINE.
scenarios() {
    local cap=$1 engine=$2 files
    mapfile -t files < <("$harness" list --requires "$cap" --engine "$engine")
    if [ "${#files[@]}" -eq 0 ]; then
        echo "suite.sh: harness list --requires $cap --engine $engine found no scenario" >&2
        return 1
    fi
    step "${#files[@]} scenario(s) needing $cap on $engine"
    "$harness" run --engine "$engine" --jobs "$jobs" --json "$out/reports-$engine" \
        --html "$out/html-$engine" --junit "$out/junit-$engine.xml" "${files[@]}"
}

# Starts COMMAND in the background as the set NAME (its output lines start
# with [NAME]); wait_sets waits for every set: status 1 when any failed.
pids=()
start_set() {
    local name=$1
    shift
    (
        "$@" 2>&1 | sed -u "s/^/[$name] /" | tee "$out/set-$name.log"
        status=${PIPESTATUS[0]}
        step "$name: status $status"
        exit "$status"
    ) &
    pids+=("$!")
}
wait_sets() {
    local pid st=0
    for pid in "${pids[@]}"; do
        wait "$pid" || st=1
    done
    return "$st"
}

rc=0
case "$part" in
ipvlan)
    socket_test=${2:?usage: suite.sh ipvlan SOCKET_TEST}
    export HARNESS_REQUIRE=ipvlan
    bash ci/vm/require-kernel.sh ipvlan vlan || exit 1
    start_set emulator scenarios ipvlan emulator
    wait_sets || rc=1
    pids=()
    start_set dockerd scenarios ipvlan dockerd
    wait_sets || rc=1
    step "the driver's socket tests"
    "$socket_test" --test-threads 1 2>&1 | tee "$out/socket-tests.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
    ;;
no-ipvlan)
    export HARNESS_REQUIRE=no-ipvlan
    bash ci/vm/require-kernel.sh no-ipvlan || exit 1
    start_set emulator scenarios no-ipvlan emulator
    start_set dockerd scenarios no-ipvlan dockerd
    wait_sets || rc=1
    ;;
*)
    echo "suite.sh: unknown part $part (ipvlan or no-ipvlan)" >&2
    exit 2
    ;;
esac

if [ -n "$(ls -A "$HARNESS_RUN_DIR" 2>/dev/null)" ]; then
    cp -a "$HARNESS_RUN_DIR" "$out/runs"
fi
# What failed, in a few lines, for ci/test.sh to print last (a CI log is
# often read from its end).
grep -h -E '^\[[a-z]+\] +FAILED ' "$out"/set-*.log >"$out/failures.txt" 2>/dev/null
grep -h -E '^test .*FAILED|^failures:|^    [a-z_:]+$' "$out/socket-tests.log" >>"$out/failures.txt" 2>/dev/null
step "done, status $rc"
exit "$rc"
