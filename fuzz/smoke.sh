#!/usr/bin/env bash
# Smoke-fuzz every target for SECONDS each (default 20) on the stable toolchain.
# Usage: fuzz/smoke.sh [SECONDS]    (SANITIZER=address to use ASan instead of none)
# The committed corpus is only read: each run works on a temporary copy, so no new corpus file
# lands in fuzz/corpus/. A crash leaves its input in fuzz/artifacts/<target>/ and makes the
# script exit non-zero, as does a target that fails to build.
set -uo pipefail

secs="${1:-20}"
sanitizer="${SANITIZER:-none}"
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1 # cargo-fuzz passes -Z flags; this lets stable rustc accept them

targets=(mptcp_option tcp_options ip_packet)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cargo fuzz build --sanitizer "$sanitizer" || exit 1

failed=()
for t in "${targets[@]}"; do
    mkdir -p "$work/$t"
    cp -r "corpus/$t/." "$work/$t/"
    echo "=== $t: ${secs}s"
    if cargo fuzz run --sanitizer "$sanitizer" "$t" "$work/$t" -- \
        -max_total_time="$secs" -print_final_stats=1 >"$work/$t.log" 2>&1; then
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
echo "all ${#targets[@]} targets ran ${secs}s each without a crash"
