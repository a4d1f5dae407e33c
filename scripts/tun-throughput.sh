#!/usr/bin/env bash
# Throughput of the userspace stack over a TUN against the kernel's TCP and MPTCP over the same
# veth, in one run, as ratios (DESIGN.md "Tests", benchmarks; issue 7). Root only.
#
# Topology (tests/netns/topology.sh, prefix "mtp"): namespace R holds the TUN and the veth of
# path 1 (198.18.1.1), namespace S is the kernel peer (198.18.1.2). Every measurement crosses
# the same veth pair, path 1, without rate limit unless RATE1 is set:
#
#   R->S  k-tcp:     iperf3 client in R (source 198.18.1.1)       -> iperf3 server in S 198.18.1.2
#         k-tcp-py:  kpeer.py TCP client in R                      -> kpeer.py TCP server in S
#         k-mptcp:   kpeer.py MPTCP client in R (the kernel's)     -> kpeer.py MPTCP server in S
#         ours-mp:   mptcp-tun client on the TUN (198.18.101.1)    -> the same MPTCP server
#         ours-tcp:  mptcp-tun --plain-tcp client on the TUN       -> kpeer.py TCP server
#   S->R  the same with the roles swapped: clients in S, our server on the TUN.
#
# kpeer.py verifies every byte of ours (pattern i % 251), and mptcp-tun every byte it receives;
# k-tcp-py runs the same Python peer on both ends, so comparing it with iperf3 shows whether
# Python is the bottleneck. Each direction repeats REPS times, the five transfers alternating,
# and the table gives Mbit/s, ratios (ours-mp against kernel TCP and kernel MPTCP, ours-tcp
# against kernel TCP) and the CPU time (user + system) of our MPTCP process per GB moved.
#
# Environment:
#   REPS=3              repetitions per direction
#   BYTES=1000000000    bytes per transfer
#   RATE1=              optional tbf rate on path 1 (e.g. 1gbit), passed to topology.sh
#   OFFLOADS=off        off: as topology.sh leaves the veths (GSO/TSO/GRO off, per-packet);
#                       on: turn GSO/TSO/GRO on for the veths (the kernel's best case)
#   OURS_OFFLOAD=on     our TUN offload (mptcp-tun --offload): on, off or auto
#   NO_BUILD=1          skip `cargo build --release`
#   TIMEOUT=300         seconds before one transfer is given up
#
# Usage: sudo scripts/tun-throughput.sh        (exit 0 when every transfer verified)

set -Euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOPOLOGY="$ROOT/tests/netns/topology.sh"
KPEER="$ROOT/tests/interop/kpeer.py"
BIN="$ROOT/target/release/mptcp-tun"

export MPT_PREFIX=mtp
export MPT_TUN=mtptun0
NS_R="${MPT_PREFIX}-r"
NS_S="${MPT_PREFIX}-s"
REPS=${REPS:-3}
BYTES=${BYTES:-1000000000}
OFFLOADS=${OFFLOADS:-off}
OURS_OFFLOAD=${OURS_OFFLOAD:-on}
TIMEOUT=${TIMEOUT:-300}

R_ADDR=198.18.1.1
S_ADDR=198.18.1.2
STACK_ADDR=198.18.101.1

die() {
    echo "error: $*" >&2
    exit 2
}

[ "$(id -u)" -eq 0 ] || die "run as root (network namespaces and a TUN)"
command -v ip >/dev/null 2>&1 || die "no 'ip' command (install iproute2)"
command -v python3 >/dev/null 2>&1 || die "no python3 (kpeer.py verifies our transfers)"
[ -e /dev/net/tun ] || die "no /dev/net/tun"
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || die "REPS must be a positive integer"
[[ "$BYTES" =~ ^[1-9][0-9]*$ ]] || die "BYTES must be a positive integer"
case "$OFFLOADS" in on | off) ;; *) die "OFFLOADS must be on or off" ;; esac
case "$OURS_OFFLOAD" in on | off | auto) ;; *) die "OURS_OFFLOAD must be on, off or auto" ;; esac
HAVE_IPERF3=0
command -v iperf3 >/dev/null 2>&1 && HAVE_IPERF3=1
HAVE_TIME=0
[ -x /usr/bin/time ] && HAVE_TIME=1

WORK=$(mktemp -d /tmp/tun-throughput.XXXXXX)
BG_PIDS=()
FAILURES=0

cleanup() {
    local pid
    for pid in "${BG_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${BG_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    bash "$TOPOLOGY" down >/dev/null 2>&1 || echo "warning: topology down failed" >&2
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

inr() { ip netns exec "$NS_R" "$@"; }
ins() { ip netns exec "$NS_S" "$@"; }

# bg NS LOG CMD...: start CMD in namespace NS in the background; its pid is in $BG.
bg() {
    local ns=$1 log=$2
    shift 2
    ip netns exec "$ns" "$@" >"$log" 2>&1 &
    BG=$!
    BG_PIDS+=("$BG")
}

# reap PID SECS: wait for a background process at most SECS seconds (then kill it); its exit
# status (137 when killed) is in $RC.
reap() {
    local pid=$1 limit=$2 waited=0
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$waited" -ge $((limit * 20)) ]; then
            kill "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.05
        waited=$((waited + 1))
    done
    RC=0
    wait "$pid" 2>/dev/null || RC=$?
    local kept=()
    for p in "${BG_PIDS[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
    BG_PIDS=("${kept[@]}")
}

# wait_listen NS PORT PID: until something listens on TCP PORT in NS (or PID died), 15 s.
wait_listen() {
    local ns=$1 port=$2 pid=$3 i
    for i in $(seq 300); do
        if ip netns exec "$ns" ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# wait_file PATH PID: until PATH exists (or PID died), 15 s.
wait_file() {
    local path=$1 pid=$2 i
    for i in $(seq 300); do
        [ -e "$path" ] && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# wait_tun_open PID: until our process has the TUN open (carrier up), 15 s.
wait_tun_open() {
    local pid=$1 i
    for i in $(seq 300); do
        [ "$(inr cat "/sys/class/net/$MPT_TUN/carrier" 2>/dev/null)" = 1 ] && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

json_get() { # json_get KEY < json-line
    python3 -c 'import json,sys
line=[l for l in sys.stdin.read().splitlines() if l.strip().startswith("{")][-1]
print(json.loads(line)[sys.argv[1]])' "$1"
}

fail() { # fail WHAT LOG...: report a failed transfer with its logs
    local what=$1
    shift
    FAILURES=$((FAILURES + 1))
    echo "FAILED: $what" >&2
    local f
    for f in "$@"; do
        echo "--- $(basename "$f")" >&2
        tail -n 20 "$f" >&2 || true
    done
}

# Each measurement sets MBIT (and for ours CPU_S, user + system seconds); "" when it failed.

# data_level_note LOG: what our JSON line says about data-level retransmission (data the peer
# acknowledged on the subflow and not at the data level for an RTO: most likely dropped by it),
# or nothing when there was none.
DATA_LEVEL_NOTES=()
data_level_note() {
    python3 -c 'import json,sys
lines=[l for l in open(sys.argv[1]).read().splitlines() if l.strip().startswith("{")]
c=json.loads(lines[-1]).get("counters", {}) if lines else {}
if c.get("data_retransmits", 0) or c.get("data_rto_expiries", 0):
    print("%d data-level timer expiries, %d data-level retransmissions" % (c.get("data_rto_expiries", 0), c.get("data_retransmits", 0)))' "$1" 2>/dev/null || true
}

# iperf3 from a client in CLIENT_NS to a server in SERVER_NS bound to SERVER_ADDR.
kernel_iperf3() {
    local server_ns=$1 server_addr=$2 client_ns=$3 client_addr=$4 port=$5
    MBIT=""
    bg "$server_ns" "$WORK/iperf3-server.log" iperf3 -s -1 -B "$server_addr" -p "$port"
    local spid=$BG
    if ! wait_listen "$server_ns" "$port" "$spid"; then
        reap "$spid" 1
        fail "iperf3 server did not start" "$WORK/iperf3-server.log"
        return
    fi
    local rc=0
    timeout "$TIMEOUT" ip netns exec "$client_ns" iperf3 -c "$server_addr" -B "$client_addr" \
        -p "$port" -n "$BYTES" -J >"$WORK/iperf3-client.json" 2>"$WORK/iperf3-client.err" || rc=$?
    reap "$spid" 10
    if [ "$rc" -ne 0 ]; then
        fail "iperf3 client (rc $rc)" "$WORK/iperf3-client.err" "$WORK/iperf3-client.json" \
            "$WORK/iperf3-server.log"
        return
    fi
    MBIT=$(python3 -c 'import json,sys
d=json.load(open(sys.argv[1]))
print("%.1f" % (d["end"]["sum_received"]["bits_per_second"]/1e6))' "$WORK/iperf3-client.json")
}

# kpeer.py on both ends: client in CLIENT_NS sends, server in SERVER_NS receives and verifies;
# PROTO 6 is TCP, 262 the kernel's MPTCP (on both ends).
kernel_kpeer() {
    local server_ns=$1 server_addr=$2 client_ns=$3 client_addr=$4 port=$5 proto=$6
    MBIT=""
    rm -f "$WORK/ready"
    bg "$server_ns" "$WORK/kpeer-server.log" env KPEER_PROTO="$proto" python3 "$KPEER" server "$server_addr" "$port" \
        recv "$BYTES" --ready-file "$WORK/ready" --deadline "$TIMEOUT" --json
    local spid=$BG
    if ! wait_file "$WORK/ready" "$spid"; then
        reap "$spid" 1
        fail "kpeer server did not start" "$WORK/kpeer-server.log"
        return
    fi
    local rc=0
    timeout "$TIMEOUT" ip netns exec "$client_ns" env KPEER_PROTO="$proto" python3 "$KPEER" client \
        "$server_addr" "$port" send "$BYTES" --bind "$client_addr" >"$WORK/kpeer-client.log" 2>&1 || rc=$?
    reap "$spid" 10
    if [ "$rc" -ne 0 ] || [ "$RC" -ne 0 ]; then
        fail "kernel kpeer transfer (client rc $rc, server rc $RC)" "$WORK/kpeer-client.log" \
            "$WORK/kpeer-server.log"
        return
    fi
    MBIT=$(json_get mbit_s <"$WORK/kpeer-server.log")
}

# run_timed LOG CPU-FILE NS CMD...: CMD in NS in the foreground, its user+system seconds in
# CPU-FILE (ip netns exec replaces itself with CMD, so the rusage is CMD's own); sets RC.
run_timed() {
    local log=$1 cpu=$2 ns=$3
    shift 3
    RC=0
    if [ "$HAVE_TIME" = 1 ]; then
        timeout "$TIMEOUT" /usr/bin/time -f "%U %S" -o "$cpu" ip netns exec "$ns" "$@" \
            >"$log" 2>"$log.err" || RC=$?
    else
        local TIMEFORMAT="%U %S"
        { time timeout "$TIMEOUT" ip netns exec "$ns" "$@" >"$log" 2>"$log.err"; } 2>"$cpu" || RC=$?
    fi
}

cpu_of() { # cpu_of CPU-FILE: user + system seconds
    awk 'NF >= 2 && $1 ~ /^[0-9.]+$/ { s = $1 + $2 } END { printf "%.3f", s }' "$1"
}

# Ours, R->S: our client on the TUN sends to a kpeer server in S (PROTO 262: the kernel's MPTCP,
# ours speaks MPTCP; 6: plain TCP, ours with --plain-tcp), which verifies.
ours_client_sends() {
    local port=$1 proto=$2 mode=()
    [ "$proto" = 6 ] && mode=(--plain-tcp)
    MBIT=""
    CPU_S=""
    rm -f "$WORK/ready"
    bg "$NS_S" "$WORK/kpeer-server.log" env KPEER_PROTO="$proto" python3 "$KPEER" server "$S_ADDR" "$port" recv "$BYTES" \
        --ready-file "$WORK/ready" --deadline "$TIMEOUT" --json
    local spid=$BG
    if ! wait_file "$WORK/ready" "$spid"; then
        reap "$spid" 1
        fail "kpeer server did not start" "$WORK/kpeer-server.log"
        return
    fi
    run_timed "$WORK/ours.log" "$WORK/ours.cpu" "$NS_R" "$BIN" client --tun "$MPT_TUN" \
        --addr "$STACK_ADDR" --connect "$S_ADDR:$port" --send "$BYTES" --json \
        --timeout "$TIMEOUT" --offload "$OURS_OFFLOAD" "${mode[@]}"
    local rc=$RC
    reap "$spid" 10
    if [ "$rc" -ne 0 ] || [ "$RC" -ne 0 ] || ! grep -q "^kpeer: verified $BYTES bytes" "$WORK/kpeer-server.log"; then
        fail "our client -> kernel server (ours rc $rc, kpeer rc $RC)" "$WORK/ours.log" \
            "$WORK/ours.log.err" "$WORK/kpeer-server.log"
        return
    fi
    MBIT=$(json_get mbit_s <"$WORK/ours.log")
    CPU_S=$(cpu_of "$WORK/ours.cpu")
    DATA_LEVEL=$(data_level_note "$WORK/ours.log")
}

# Ours, S->R: a kpeer client in S (PROTO as above) sends to our server on the TUN, which verifies.
ours_server_recvs() {
    local port=$1 proto=$2 mode=()
    [ "$proto" = 6 ] && mode=(--plain-tcp)
    MBIT=""
    CPU_S=""
    # Our server in the background under /usr/bin/time (or bash's time in a subshell).
    if [ "$HAVE_TIME" = 1 ]; then
        /usr/bin/time -f "%U %S" -o "$WORK/ours.cpu" ip netns exec "$NS_R" "$BIN" server \
            --tun "$MPT_TUN" --addr "$STACK_ADDR" --port "$port" --recv "$BYTES" --json \
            --timeout "$TIMEOUT" --offload "$OURS_OFFLOAD" "${mode[@]}" >"$WORK/ours.log" 2>"$WORK/ours.log.err" &
    else
        (
            TIMEFORMAT="%U %S"
            { time ip netns exec "$NS_R" "$BIN" server --tun "$MPT_TUN" --addr "$STACK_ADDR" \
                --port "$port" --recv "$BYTES" --json --timeout "$TIMEOUT" \
                --offload "$OURS_OFFLOAD" "${mode[@]}" >"$WORK/ours.log" 2>"$WORK/ours.log.err"; } 2>"$WORK/ours.cpu"
        ) &
    fi
    local opid=$!
    BG_PIDS+=("$opid")
    if ! wait_tun_open "$opid"; then
        reap "$opid" 1
        fail "our server did not open the TUN" "$WORK/ours.log" "$WORK/ours.log.err"
        return
    fi
    local rc=0
    timeout "$TIMEOUT" ip netns exec "$NS_S" env KPEER_PROTO="$proto" python3 "$KPEER" client \
        "$STACK_ADDR" "$port" send "$BYTES" --bind "$S_ADDR" >"$WORK/kpeer-client.log" 2>&1 || rc=$?
    reap "$opid" 15
    if [ "$rc" -ne 0 ] || [ "$RC" -ne 0 ]; then
        fail "kernel client -> our server (kpeer rc $rc, ours rc $RC)" "$WORK/kpeer-client.log" \
            "$WORK/ours.log" "$WORK/ours.log.err"
        return
    fi
    MBIT=$(json_get mbit_s <"$WORK/ours.log")
    CPU_S=$(cpu_of "$WORK/ours.cpu")
}

offload_state() { # offload_state NS DEV: "tso off gso off gro off"
    ip netns exec "$1" ethtool -k "$2" 2>/dev/null | awk '
        /^tcp-segmentation-offload:/ { t = $2 }
        /^generic-segmentation-offload:/ { g = $2 }
        /^generic-receive-offload:/ { r = $2 }
        END { printf "tso %s gso %s gro %s", t ? t : "?", g ? g : "?", r ? r : "?" }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-"; else printf "%.3f", a / b }'; }
per_gb() { awk -v c="$1" -v n="$BYTES" 'BEGIN { if (c == "") print "-"; else printf "%.2f", c / (n / 1e9) }'; }
median() { # median VALUES...: ignores empty values
    printf '%s\n' "$@" | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "" } else if (NR % 2) { print v[(NR + 1) / 2] }
        else { printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 } }'
}
show() { [ -n "$1" ] && printf '%s' "$1" || printf 'FAIL'; }

# ---------------------------------------------------------------------------------------------

if [ "${NO_BUILD:-0}" != 1 ]; then
    echo "building: cargo build --release --bin mptcp-tun" >&2
    (cd "$ROOT" && cargo build --release --bin mptcp-tun) >&2 || die "release build failed"
fi
[ -x "$BIN" ] || die "no $BIN (build it, or unset NO_BUILD)"

# Without ethtool the veths keep GSO/TSO on whatever OFFLOADS says: a table labelled "off"
# would measure "on".
command -v ethtool >/dev/null 2>&1 || die "no ethtool: OFFLOADS=$OFFLOADS cannot be set on the veths (apt-get install -y ethtool)"
out=$(bash "$TOPOLOGY" up 2>&1) || die "topology up failed: $out"
case "$out" in skipped:*) die "${out}" ;; esac
if [ "$OFFLOADS" = on ]; then
    for dev in r1 r2; do inr ethtool -K "$MPT_PREFIX-$dev" gso on tso on gro on 2>/dev/null || true; done
    for dev in s1 s2; do ins ethtool -K "$MPT_PREFIX-$dev" gso on tso on gro on 2>/dev/null || true; done
fi

echo "# tun-throughput: $(date -u +%Y-%m-%dT%H:%M:%SZ), kernel $(uname -r), $(nproc) CPUs"
echo "# stack: $("$BIN" --version 2>/dev/null) (release), git $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')"
echo "# bytes per transfer: $BYTES, repetitions: $REPS, path 1 rate: ${RATE1:-unlimited}"
echo "# offloads (OFFLOADS=$OFFLOADS): $MPT_PREFIX-r1: $(offload_state "$NS_R" "$MPT_PREFIX-r1");" \
    "$MPT_PREFIX-s1: $(offload_state "$NS_S" "$MPT_PREFIX-s1");" \
    "TUN $MPT_TUN: $(offload_state "$NS_R" "$MPT_TUN")"
if [ "$HAVE_IPERF3" = 1 ]; then
    echo "# kernel baseline: iperf3 ($(iperf3 --version 2>/dev/null | head -n1)) and kpeer.py"
else
    echo "# kernel baseline: kpeer.py only (no iperf3; apt-get install -y iperf3 to compare)"
fi
echo "# ours: mptcp-tun over TUN $MPT_TUN ($STACK_ADDR), TUN offload $OURS_OFFLOAD; kernel peer kpeer.py"
echo "#       (KPEER_PROTO 262 = MPTCP against ours-mptcp, 6 = TCP against ours-tcp);"
echo "#       CPU = user + system seconds of our MPTCP process per GB moved (the kernel's receive"
echo "#       path runs in the writer's context, so it counts what the TUN write costs too)"
echo

declare -A COL
fmt="%-18s %3s %9s %9s %9s %9s %9s %10s %11s %10s %8s\n"
printf "$fmt" direction rep k-tcp k-tcp-py k-mptcp ours-mp ours-tcp mp/k-tcp mp/k-mptcp tcp/k-tcp "CPU s/GB"

measure() { # measure DIR REP
    local dir=$1 rep=$2 ki="" kk="" km="" om="" ot="" cpu=""
    if [ "$dir" = "R->S" ]; then
        if [ "$HAVE_IPERF3" = 1 ]; then
            kernel_iperf3 "$NS_S" "$S_ADDR" "$NS_R" "$R_ADDR" 5201
            ki=$MBIT
        fi
        kernel_kpeer "$NS_S" "$S_ADDR" "$NS_R" "$R_ADDR" 5202 6
        kk=$MBIT
        kernel_kpeer "$NS_S" "$S_ADDR" "$NS_R" "$R_ADDR" 5203 262
        km=$MBIT
        DATA_LEVEL=""
        ours_client_sends 5204 262
        om=$MBIT cpu=$CPU_S
        [ -z "$DATA_LEVEL" ] || DATA_LEVEL_NOTES+=("R->S rep $rep, ours-mp: $DATA_LEVEL")
        ours_client_sends 5205 6
        ot=$MBIT
    else
        if [ "$HAVE_IPERF3" = 1 ]; then
            kernel_iperf3 "$NS_R" "$R_ADDR" "$NS_S" "$S_ADDR" 5211
            ki=$MBIT
        fi
        kernel_kpeer "$NS_R" "$R_ADDR" "$NS_S" "$S_ADDR" 5212 6
        kk=$MBIT
        kernel_kpeer "$NS_R" "$R_ADDR" "$NS_S" "$S_ADDR" 5213 262
        km=$MBIT
        ours_server_recvs 5214 262
        om=$MBIT cpu=$CPU_S
        ours_server_recvs 5215 6
        ot=$MBIT
    fi
    # Without iperf3, kpeer.py's TCP is the kernel TCP baseline.
    local base=$ki
    [ -n "$base" ] || base=$kk
    local label
    [ "$dir" = "R->S" ] && label="R->S (our client)" || label="S->R (our server)"
    printf "$fmt" "$label" "$rep" "$([ "$HAVE_IPERF3" = 1 ] && show "$ki" || echo -)" \
        "$(show "$kk")" "$(show "$km")" "$(show "$om")" "$(show "$ot")" "$(ratio "$om" "$base")" \
        "$(ratio "$om" "$km")" "$(ratio "$ot" "$base")" "$(per_gb "$cpu")"
    COL[$dir,ki]+="$ki "
    COL[$dir,kk]+="$kk "
    COL[$dir,km]+="$km "
    COL[$dir,om]+="$om "
    COL[$dir,ot]+="$ot "
    COL[$dir,cpu]+="$(per_gb "$cpu" | sed 's/^-$//') "
}

for dir in "R->S" "S->R"; do
    for rep in $(seq "$REPS"); do
        measure "$dir" "$rep"
    done
done

echo
printf "$fmt" "median" "" k-tcp k-tcp-py k-mptcp ours-mp ours-tcp mp/k-tcp mp/k-mptcp tcp/k-tcp "CPU s/GB"
for dir in "R->S" "S->R"; do
    # shellcheck disable=SC2086
    {
        ki=$(median ${COL[$dir,ki]})
        kk=$(median ${COL[$dir,kk]})
        km=$(median ${COL[$dir,km]})
        om=$(median ${COL[$dir,om]})
        ot=$(median ${COL[$dir,ot]})
        cpu=$(median ${COL[$dir,cpu]})
    }
    base=$ki
    [ -n "$base" ] || base=$kk
    [ "$dir" = "R->S" ] && label="R->S (our client)" || label="S->R (our server)"
    printf "$fmt" "$label" "" "${ki:--}" "${kk:--}" "${km:--}" "${om:--}" "${ot:--}" \
        "$(ratio "$om" "$base")" "$(ratio "$om" "$km")" "$(ratio "$ot" "$base")" "${cpu:--}"
    if [ -n "$ki" ] && [ -n "$kk" ]; then
        awk -v ki="$ki" -v kk="$kk" -v d="$dir" 'BEGIN {
            if (kk >= 0.9 * ki) printf "# %s: kpeer.py reaches %.0f%% of iperf3: Python is not the bottleneck\n", d, 100 * kk / ki
            else printf "# %s: kpeer.py reaches only %.0f%% of iperf3: Python limits the kpeer columns\n", d, 100 * kk / ki }'
    fi
done

for note in "${DATA_LEVEL_NOTES[@]}"; do
    echo "# $note (data acknowledged on the subflow but not at the data level for an RTO; see RFC-NOTES.md 3.3.6)"
done

if [ "$FAILURES" -gt 0 ]; then
    echo "# $FAILURES transfer(s) failed (see stderr)"
    exit 1
fi
