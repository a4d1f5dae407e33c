#!/usr/bin/env bash
# Multipath goodput and failover of the userspace stack against kernel <-> kernel MPTCP, on the
# same two-path topology with tbf rate limits on both paths (DESIGN.md "Tests"). Root only.
#
# Topology: tests/netns/topology.sh with MPT_PREFIX=mpb, MPT_TUN=mpbtun0, rebuilt for every
# transfer (clean state), plus policy rules made here so that the path is chosen by the
# *client's* source address, both ways, whatever the server address:
#
#   R (client side)                                 S (kernel MPTCP server, 198.18.1.2)
#   kernel client 198.18.1.1, ours 198.18.101.1  -- path 1: mpb-r1 == mpb-s1, tbf RATE1
#   kernel client 198.18.2.1, ours 198.18.102.1  -- path 2: mpb-r2 == mpb-s2, tbf RATE2
#
#   R: "from 198.18.{1.1,101.0/24}" -> table 201 (default via 198.18.1.2 dev mpb-r1),
#      "from 198.18.{2.1,102.0/24}" -> table 202 (default via 198.18.2.2 dev mpb-r2);
#   S: "to" the same addresses -> table 101 / 102 (topology.sh's path 1 / path 2 tables).
# Without them a subflow from a path-2 address to 198.18.1.2 would travel path 1 (topology.sh
# pins each (S address, stack address) pair, and 198.18.1.2 is a path-1 address).
#
# The data flows R -> S, into tools/mpbench.py recv in S (an IPPROTO_MPTCP listener that
# verifies the pattern i % 251 and logs the bytes delivered per 50 ms). The sender is
#   kernel: tests/interop/kpeer.py client (KPEER_PROTO=262) in R bound to 198.18.1.1, with
#           `ip mptcp limits set subflows 4 add_addr_accepted 4` and
#           `ip mptcp endpoint add 198.18.2.1 dev mpb-r2 subflow` in R (the join);
#   ours:   $BIN client --tun mpbtun0 --addr 198.18.101.1 [--addr 198.18.102.1]
#           --connect 198.18.1.2:PORT --send N --json, in R.
#
# Cases (each REPS times, kernel and ours alternating):
#   single     path 1 only (no join), RATE1: goodput
#   two        paths 1 + 2 at RATE1 + RATE2: goodput and its fraction of RATE1 + RATE2
#   two-low    paths 1 + 2 at RATE1 + RATE2_LOW: goodput and its fraction of the sum
#   blackhole  RATE1 + RATE2; FAIL_AT seconds after the accept path 1 silently drops every
#              packet, both ways: `iptables -t raw -I PREROUTING -i mpb-r1 -j DROP` in R and
#              `... -i mpb-s1 ...` in S (dropped on arrival, so neither end's own stack gets a
#              local error, as with OUTPUT rules); FAIL_AFTER more seconds of data at RATE2
#   linkdown   the same with `ip link set mpb-r1 down` in R instead (the kernel client sees it;
#              our stack is not told, only its packets for path 1 now have no route in R)
# The goodput is the receiver's: verified bytes from its first to its last read. For the
# failover cases, from the 50 ms log and the time of the fault (CLOCK_MONOTONIC, the same in
# every namespace; tools/mpbench.py fault stamps it):
#   recover_s  time from the fault to the first of SUSTAIN (3) consecutive 50 ms intervals that
#              each deliver at least RECOVER_FRAC (0.9) of RATE2 (the surviving path, nominal);
#              "never" when that did not happen before the transfer ended or failed
#   max_gap_s  the longest pause between two reads of the receiver ending after the fault (no
#              byte delivered to the application); when the transfer never resumed, the pause
#              until the receiver gave up (">=" in the table: a lower bound)
# RTT: ping over each path, idle (after the tbf is set) and loaded (during the first "two"
# transfer of each stack; the tbf queue fills), for the "1 RTO + 10 RTTs" target.
#
# Environment:
#   RATE1=100mbit RATE2=100mbit RATE2_LOW=30mbit   tbf rates (kbit, mbit or gbit)
#   DURATION=8        seconds of data per goodput transfer at the nominal rate (sizes BYTES)
#   BYTES=            bytes per goodput transfer (overrides DURATION)
#   FAIL_AT=3         failover: seconds after the accept when path 1 fails
#   FAIL_AFTER=6      failover: seconds of data at RATE2 after the failure (sizes the transfer)
#   REPS=3            repetitions per case and stack
#   CASES="single two two-low blackhole linkdown"
#   WHICH=both        kernel | ours | both
#   BIN=target/release/mptcp-tun of this worktree (point it at another build)
#   NO_BUILD=1        skip `cargo build --release --bin mptcp-tun`
#   TIMEOUT=40        seconds before one transfer is given up (every process is bounded)
#   RECOVER_FRAC=0.9 SUSTAIN=3
#   LOGDIR=           keep every transfer's logs (receiver 50 ms log, sender output) there
#   OUT=/tmp/multipath-bench.jsonl   JSON lines: one per transfer ("kind":"run"), per ping
#                     ("kind":"rtt") and per case and stack with medians ("kind":"summary")
#
# Usage: sudo scripts/multipath-bench.sh     (exit 0 when every goodput transfer verified;
#        a failover that does not complete is a measurement, not a script failure)

set -Euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOPOLOGY="$ROOT/tests/netns/topology.sh"
KPEER="$ROOT/tests/interop/kpeer.py"
MPBENCH="$ROOT/tools/mpbench.py"
BIN=${BIN:-$ROOT/target/release/mptcp-tun}

export MPT_PREFIX=mpb
export MPT_TUN=mpbtun0
NS_R="${MPT_PREFIX}-r"
NS_S="${MPT_PREFIX}-s"
R1="${MPT_PREFIX}-r1"
R2="${MPT_PREFIX}-r2"
S1="${MPT_PREFIX}-s1"

RATE1=${RATE1:-100mbit}
RATE2=${RATE2:-100mbit}
RATE2_LOW=${RATE2_LOW:-30mbit}
DURATION=${DURATION:-8}
BYTES=${BYTES:-}
FAIL_AT=${FAIL_AT:-3}
FAIL_AFTER=${FAIL_AFTER:-6}
REPS=${REPS:-3}
CASES=${CASES:-single two two-low blackhole linkdown}
WHICH=${WHICH:-both}
TIMEOUT=${TIMEOUT:-40}
RECOVER_FRAC=${RECOVER_FRAC:-0.9}
SUSTAIN=${SUSTAIN:-3}
OUT=${OUT:-/tmp/multipath-bench.jsonl}

S_ADDR=198.18.1.2
K_ADDR1=198.18.1.1
K_ADDR2=198.18.2.1
O_ADDR1=198.18.101.1
O_ADDR2=198.18.102.1

die() {
    echo "error: $*" >&2
    exit 2
}

[ "$(id -u)" -eq 0 ] || die "run as root (network namespaces and a TUN)"
for c in ip tc iptables ping python3 timeout; do
    command -v "$c" >/dev/null 2>&1 || die "no '$c' command"
done
[ -e /dev/net/tun ] || die "no /dev/net/tun"
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || die "REPS must be a positive integer"
[ -z "$BYTES" ] || [[ "$BYTES" =~ ^[1-9][0-9]*$ ]] || die "BYTES must be a positive integer"
case "$WHICH" in kernel) STACKS=(kernel) ;; ours) STACKS=(ours) ;; both) STACKS=(kernel ours) ;;
*) die "WHICH must be kernel, ours or both" ;; esac
for c in $CASES; do
    case "$c" in single | two | two-low | blackhole | linkdown) ;; *) die "unknown case $c" ;; esac
done

mbit_of() { # mbit_of RATE: "100mbit" -> 100
    awk -v r="$1" 'BEGIN {
        v = r + 0; u = tolower(r); sub(/^[0-9.]+/, "", u)
        if (u == "kbit") v /= 1000; else if (u == "gbit") v *= 1000; else if (u != "mbit") v = -1
        print v }'
}
M1=$(mbit_of "$RATE1")
M2=$(mbit_of "$RATE2")
M2L=$(mbit_of "$RATE2_LOW")
for m in "$M1" "$M2" "$M2L"; do
    awk -v m="$m" 'BEGIN { exit !(m > 0) }' || die "rates must look like 100mbit, 500kbit or 1gbit"
done
bytes_for() { # bytes_for MBIT SECONDS
    awk -v m="$1" -v s="$2" 'BEGIN { printf "%d", m * 1e6 / 8 * s }'
}

WORK=$(mktemp -d /tmp/multipath-bench.XXXXXX)
BG_PIDS=()
FAILURES=0

cleanup() {
    local pid
    for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${BG_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    bash "$TOPOLOGY" down >/dev/null 2>&1 || echo "warning: topology down failed" >&2
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

inr() { ip netns exec "$NS_R" "$@"; }
ins() { ip netns exec "$NS_S" "$@"; }

forget() { # forget PID: drop PID from the list of background processes
    local kept=() p
    for p in "${BG_PIDS[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done
    BG_PIDS=("${kept[@]}")
}

# wait_file PATH PID: until PATH exists (or PID died), 15 s.
wait_file() {
    for _ in $(seq 300); do
        [ -e "$1" ] && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# setup RATE_PATH1 RATE_PATH2 JOIN: the topology, the path rules, kernel MPTCP in R (with the
# subflow endpoint when JOIN is 1).
setup() {
    local out
    out=$(RATE1=$1 RATE2=$2 bash "$TOPOLOGY" up 2>&1) || die "topology up failed: $out"
    case "$out" in skipped:*) die "$out" ;; esac
    inr ip route add default via 198.18.1.2 dev "$R1" table 201
    inr ip route add default via 198.18.2.2 dev "$R2" table 202
    inr ip rule add from "$K_ADDR1" table 201 pref 1001
    inr ip rule add from 198.18.101.0/24 table 201 pref 1001
    inr ip rule add from "$K_ADDR2" table 202 pref 1002
    inr ip rule add from 198.18.102.0/24 table 202 pref 1002
    ins ip rule add to "$K_ADDR1" table 101 pref 901
    ins ip rule add to 198.18.101.0/24 table 101 pref 901
    ins ip rule add to "$K_ADDR2" table 102 pref 902
    ins ip rule add to 198.18.102.0/24 table 102 pref 902
    inr sysctl -qw net.mptcp.enabled=1
    inr ip mptcp limits set subflows 4 add_addr_accepted 4
    if [ "$3" = 1 ]; then
        inr ip mptcp endpoint add "$K_ADDR2" dev "$R2" subflow
    fi
}

# fault_cmd KIND: the command (argv, in FAULT) that breaks path 1.
fault_cmd() {
    case "$1" in
    blackhole)
        FAULT=(bash -c "ip netns exec $NS_R iptables -t raw -I PREROUTING -i $R1 -j DROP &&
            ip netns exec $NS_S iptables -t raw -I PREROUTING -i $S1 -j DROP")
        ;;
    linkdown)
        FAULT=(ip netns exec "$NS_R" ip link set "$R1" down)
        ;;
    esac
}

# ping_path NS SRC DST COUNT LOG: background ping, pid in $PING_PID.
ping_path() {
    ip netns exec "$1" ping -n -q -i 0.1 -c "$4" -I "$2" "$3" >"$5" 2>&1 &
    PING_PID=$!
    BG_PIDS+=("$PING_PID")
}

rtt_record() { # rtt_record STACK PATH STATE LOG
    local line
    line=$(grep -E '^(rtt|round-trip)' "$4" | head -n1)
    python3 - "$1" "$2" "$3" "$line" "$(grep -E 'packets transmitted' "$4" | head -n1)" <<'EOF' >>"$OUT"
import json, re, sys
stack, path, state, line, loss = sys.argv[1:6]
m = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", line)
rec = {"kind": "rtt", "stack": stack, "path": int(path), "state": state}
if m:
    rec.update(min_ms=float(m[1]), avg_ms=float(m[2]), max_ms=float(m[3]), mdev_ms=float(m[4]))
rec["ping"] = loss
print(json.dumps(rec, separators=(",", ":")))
EOF
}

# run_one STACK CASE REP: one transfer, one "run" line in $OUT.
run_one() {
    local stack=$1 case=$2 rep=$3
    local r2=$RATE2 m2=$M2 join=1 fail="" n port=$((5000 + RANDOM % 1000))
    case "$case" in
    single) join=0 ;;
    two-low) r2=$RATE2_LOW m2=$M2L ;;
    blackhole | linkdown) fail=$case ;;
    esac
    local total
    if [ -n "$fail" ]; then
        n=$(awk -v a="$(bytes_for "$M1" "$FAIL_AT")" -v b="$(bytes_for "$M2" "$((FAIL_AT + FAIL_AFTER))")" \
            'BEGIN { printf "%d", a + b }')
    elif [ -n "$BYTES" ]; then
        n=$BYTES
    else
        if [ "$join" = 1 ]; then total=$(awk -v a="$M1" -v b="$m2" 'BEGIN { print a + b }'); else total=$M1; fi
        n=$(bytes_for "$total" "$DURATION")
    fi
    setup "$RATE1" "$r2" "$([ "$stack" = kernel ] && echo "$join" || echo 0)"

    local d="$WORK/$stack-$case-$rep"
    mkdir -p "$d"
    ins python3 "$MPBENCH" recv "$S_ADDR" "$port" "$n" --log "$d/recv.log" \
        --ready-file "$d/ready" --start-file "$d/start" --timeout "$((TIMEOUT + 5))" \
        --deadline "$((TIMEOUT + 8))" >"$d/recv.out" 2>"$d/recv.err" &
    local rpid=$!
    BG_PIDS+=("$rpid")
    if ! wait_file "$d/ready" "$rpid"; then
        echo "FAILED: receiver did not start ($stack $case $rep)" >&2
        cat "$d/recv.err" >&2
        FAILURES=$((FAILURES + 1))
        kill "$rpid" 2>/dev/null
        wait "$rpid" 2>/dev/null
        forget "$rpid"
        return
    fi
    local fpid="" p1="" p2=""
    if [ -n "$fail" ]; then
        fault_cmd "$fail"
        python3 "$MPBENCH" fault --start-file "$d/start" --after "$FAIL_AT" -- "${FAULT[@]}" \
            >"$d/fault.json" 2>"$d/fault.err" &
        fpid=$!
        BG_PIDS+=("$fpid")
    fi
    if [ "$case" = two ] && [ "$rep" = 1 ]; then
        local pings=$((DURATION * 10 - 10))
        [ "$pings" -ge 5 ] || pings=5
        ping_path "$NS_R" "$K_ADDR1" "$S_ADDR" "$pings" "$d/ping1.log"
        p1=$PING_PID
        ping_path "$NS_R" "$K_ADDR2" 198.18.2.2 "$pings" "$d/ping2.log"
        p2=$PING_PID
    fi
    local src=0
    if [ "$stack" = kernel ]; then
        KPEER_PROTO=262 timeout "$((TIMEOUT + 5))" ip netns exec "$NS_R" python3 "$KPEER" client \
            "$S_ADDR" "$port" send "$n" --bind "$K_ADDR1" --timeout "$TIMEOUT" \
            --deadline "$TIMEOUT" --json >"$d/send.out" 2>"$d/send.err" || src=$?
    else
        local addrs=(--addr "$O_ADDR1")
        [ "$join" = 1 ] && addrs+=(--addr "$O_ADDR2")
        timeout "$((TIMEOUT + 10))" ip netns exec "$NS_R" "$BIN" client --tun "$MPT_TUN" \
            "${addrs[@]}" --connect "$S_ADDR:$port" --send "$n" --json --timeout "$TIMEOUT" \
            >"$d/send.out" 2>"$d/send.err" || src=$?
    fi
    # The receiver ends by itself (EOF, reset, its own timeout or deadline); bound it anyway.
    for _ in $(seq $(((TIMEOUT + 10) * 10))); do
        kill -0 "$rpid" 2>/dev/null || break
        sleep 0.1
    done
    kill "$rpid" 2>/dev/null || true
    local rrc=0
    wait "$rpid" 2>/dev/null || rrc=$?
    forget "$rpid"
    if [ -n "$fpid" ]; then
        kill "$fpid" 2>/dev/null || true
        wait "$fpid" 2>/dev/null || true
        forget "$fpid"
    fi
    for p in $p1 $p2; do
        wait "$p" 2>/dev/null || true
        forget "$p"
    done
    [ -n "$p1" ] && rtt_record "$stack" 1 loaded "$d/ping1.log"
    [ -n "$p2" ] && rtt_record "$stack" 2 loaded "$d/ping2.log"

    local event=() ref=$m2
    if [ -n "$fail" ]; then
        local te
        te=$(python3 -c 'import json,sys
try: print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["t_event"] or "")
except Exception: print("")' "$d/fault.json")
        [ -n "$te" ] && event=(--event "$te" --fault-file "$d/fault.json")
        [ -n "$te" ] || echo "warning: no fault time for $stack $case $rep: $(cat "$d/fault.err")" >&2
    fi
    local rec
    rec=$(python3 "$MPBENCH" analyze --log "$d/recv.log" "${event[@]}" --ref-mbit "$ref" \
        --frac "$RECOVER_FRAC" --sustain "$SUSTAIN" --sender-out "$d/send.out" \
        --meta "kind=run" --meta "stack=$stack" --meta "case=$case" --meta "rep=$rep" \
        --meta "rate1=$RATE1" --meta "rate2=$r2" --meta "nominal_mbit=$(
            if [ "$join" = 1 ] && [ -z "$fail" ]; then awk -v a="$M1" -v b="$m2" 'BEGIN { print a + b }'; else echo "$M1"; fi
        )" --meta "sender_rc=$src" --meta "receiver_rc=$rrc" --meta "bytes_expected=$n" 2>"$d/analyze.err")
    if [ -z "$rec" ]; then
        echo "FAILED: no analysis for $stack $case $rep: $(cat "$d/analyze.err")" >&2
        FAILURES=$((FAILURES + 1))
    else
        echo "$rec" >>"$OUT"
        echo "$rec" | python3 "$MPBENCH" line >&2
    fi
    if [ -z "$fail" ] && { [ "$src" -ne 0 ] || [ "$rrc" -ne 0 ]; }; then
        FAILURES=$((FAILURES + 1))
        echo "FAILED: $stack $case rep $rep (sender rc $src, receiver rc $rrc)" >&2
        for f in send.out send.err recv.out recv.err; do
            echo "--- $f" >&2
            tail -n 5 "$d/$f" >&2 || true
        done
    fi
    bash "$TOPOLOGY" down >/dev/null 2>&1 || true
    if [ -n "${LOGDIR:-}" ]; then
        mkdir -p "$LOGDIR" && cp -r "$d" "$LOGDIR/"
    fi
}

# ---------------------------------------------------------------------------------------------

if [[ " ${STACKS[*]} " == *" ours "* ]]; then
    if [ "${NO_BUILD:-0}" != 1 ]; then
        echo "building: cargo build --release --bin mptcp-tun" >&2
        (cd "$ROOT" && cargo build --release --bin mptcp-tun) >&2 || die "release build failed"
    fi
    [ -x "$BIN" ] || die "no $BIN (build it, or unset NO_BUILD)"
fi

mkdir -p "$(dirname "$OUT")"
: >"$OUT"
{
    echo "# multipath-bench: $(date -u +%Y-%m-%dT%H:%M:%SZ), kernel $(uname -r), $(nproc) CPUs"
    [[ " ${STACKS[*]} " == *" ours "* ]] &&
        echo "# ours: $BIN ($("$BIN" --version 2>/dev/null)), git $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')"
    echo "# RATE1=$RATE1 RATE2=$RATE2 RATE2_LOW=$RATE2_LOW DURATION=$DURATION BYTES=${BYTES:-auto}" \
        "FAIL_AT=$FAIL_AT FAIL_AFTER=$FAIL_AFTER REPS=$REPS TIMEOUT=$TIMEOUT" \
        "RECOVER_FRAC=$RECOVER_FRAC SUSTAIN=$SUSTAIN"
} | tee "$WORK/header" >&2
python3 - "$(cat "$WORK/header")" <<'EOF' >>"$OUT"
import json, sys
print(json.dumps({"kind": "header", "text": sys.argv[1]}, separators=(",", ":")))
EOF

# Idle RTT of each path with its tbf.
setup "$RATE1" "$RATE2" 0
ping_path "$NS_R" "$K_ADDR1" "$S_ADDR" 20 "$WORK/ping-idle1.log"
p1=$PING_PID
ping_path "$NS_R" "$K_ADDR2" 198.18.2.2 20 "$WORK/ping-idle2.log"
p2=$PING_PID
wait "$p1" "$p2" 2>/dev/null || true
forget "$p1"
forget "$p2"
rtt_record topology 1 idle "$WORK/ping-idle1.log"
rtt_record topology 2 idle "$WORK/ping-idle2.log"
bash "$TOPOLOGY" down >/dev/null 2>&1 || true

for case in $CASES; do
    for rep in $(seq "$REPS"); do
        for stack in "${STACKS[@]}"; do
            run_one "$stack" "$case" "$rep"
        done
    done
done

python3 "$MPBENCH" summarize "$OUT"

if [ "$FAILURES" -gt 0 ]; then
    echo "# $FAILURES goodput transfer(s) failed (see stderr)"
    exit 1
fi
