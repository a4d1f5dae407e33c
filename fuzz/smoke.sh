#!/usr/bin/env bash
# Smoke-fuzz every target on the stable toolchain, deterministically: a fixed seed and a fixed
# number of runs per target (RUNS_SCALE multiplies them; the default takes about a minute in all),
# so CI gives the same answer every time. For open-ended fuzzing use `cargo fuzz run` (README).
# Usage: fuzz/smoke.sh [RUNS_SCALE]    (SANITIZER=address to use ASan instead of none)
# The committed corpus is only read: each run works on a temporary copy, so no new corpus file
# lands in fuzz/corpus/. A crash leaves its input in fuzz/artifacts/<target>/ and makes the
# script exit non-zero, as does a target that fails to build.
set -uo pipefail

scale="${1:-1}"
sanitizer="${SANITIZER:-none}"
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1 # cargo-fuzz passes -Z flags; this lets stable rustc accept them

targets=(mptcp_option tcp_options ip_packet endpoint_pair multipath_pair)
# Every invariant of endpoint_pair is checked (no known-bug skips), and runs are seeded.
export ENDPOINT_PAIR_STRICT=1
# The same for multipath_pair: its regressions are fixed and must pass with every check on.
export MULTIPATH_PAIR_STRICT=1
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cargo fuzz build --sanitizer "$sanitizer" || exit 1

failed=()
# Replay the minimized inputs of every bug found so far: each must now pass.
for dir in regressions/*/; do
    [ -d "$dir" ] || continue
    t=$(basename "$dir")
    for input in "$dir"*; do
        [ -f "$input" ] || continue
        if ! cargo fuzz run --sanitizer "$sanitizer" "$t" "$input" >"$work/replay.log" 2>&1; then
            echo "!!! regression $input fails again:"
            tail -n 20 "$work/replay.log"
            failed+=("$t regression $(basename "$input")")
        fi
    done
done
echo "=== regressions replayed"

for t in "${targets[@]}"; do
    mkdir -p "$work/$t"
    cp -r "corpus/$t/." "$work/$t/"
    case "$t" in
        endpoint_pair) runs=$((60000 * scale)) ;;
        multipath_pair) runs=$((20000 * scale)) ;;
        *) runs=$((2000000 * scale)) ;;
    esac
    echo "=== $t: $runs runs"
    if cargo fuzz run --sanitizer "$sanitizer" "$t" "$work/$t" -- \
        -seed=1 -runs="$runs" -print_final_stats=1 >"$work/$t.log" 2>&1; then
        grep -E '#[0-9]+[[:space:]]+DONE' "$work/$t.log" | tail -n 1
    elif grep -q 'failed to build fuzz script' "$work/$t.log"; then
        echo "!!! $t did not build:"
        grep -E '^error' "$work/$t.log" | head -n 20
        failed+=("$t (build)")
    else
        echo "!!! $t CRASHED; last lines of its log:"
        tail -n 40 "$work/$t.log"
        failed+=("$t")
    fi
done

if ((${#failed[@]})); then
    echo "failed: ${failed[*]} (crash inputs are in fuzz/artifacts/<target>/)"
    exit 1
fi
echo "all ${#targets[@]} targets ran without a crash (scale $scale)"
