#!/usr/bin/env bash
# The TUN demo between two network namespaces on one host, end to end (root; about 15 s).
#
# Builds the two-path topology of tests/netns/topology.sh (its own prefix, MPT_PATH_BY=stack so
# that each stack address keeps its own path both ways, a tbf rate limit on each path):
#
#   namespace R (PREFIX-r): mptcp-tun on TUN mptun0 with 198.18.101.1 (path 1) and 198.18.102.1
#                           (path 2), routed into the TUN
#   namespace S (PREFIX-s): the Linux kernel's MPTCP, 198.18.1.2 (path 1) and 198.18.2.2 (path 2)
#
# then runs two transfers, every byte verified on both sides:
#   1. our client (both addresses: the initial subflow from 198.18.101.1, an MP_JOIN from
#      198.18.102.1) sends to a kernel MPTCP server (tests/interop/kpeer.py, KPEER_PROTO=262);
#   2. a kernel MPTCP client sends to our server, which announces its second address
#      (ADD_ADDR); the kernel joins to it.
# and prints a short summary of each: throughput, subflows with their bytes, and the kernel's
# counters (MPJoinSynRx/MPJoinAckRx: the kernel verified our join HMACs; AddAddr/
# MPJoinSynAckRx: it took our announcement and joined).
#
# Exit status: 0 when both transfers completed and verified over two subflows each; 1
# otherwise. Where the machine cannot run it (not root, no network namespaces, no TUN, no kernel
# MPTCP, no python3) it prints "skipped: <reason>" and exits 0, so CI may run it anywhere.
#
# Environment:
#   DEMO_PREFIX=i6demo   name prefix of the namespaces and veths (at most 12 characters)
#   DEMO_BYTES=20000000  bytes per transfer
#   DEMO_RATE=40mbit     tbf rate of each path
#   MPTCP_TUN=           the mptcp-tun binary; default: build target/release/mptcp-tun
#   DEMO_TIMEOUT=30      seconds before a transfer is given up
#
# Everything it makes is removed by name on exit (also on failure or Ctrl-C).

set -Euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOPOLOGY="$ROOT/tests/netns/topology.sh"
KPEER="$ROOT/tests/interop/kpeer.py"

PREFIX=${DEMO_PREFIX:-i6demo}
BYTES=${DEMO_BYTES:-20000000}
RATE=${DEMO_RATE:-40mbit}
TIMEOUT=${DEMO_TIMEOUT:-30}
NS_R="${PREFIX}-r"
NS_S="${PREFIX}-s"
TUN=mptun0
P1=198.18.101.1 # our address on path 1
P2=198.18.102.1 # our address on path 2
K1=198.18.1.2   # the kernel's address on path 1

skip() {
    echo "skipped: $*"
    exit 0
}

# --- Can this machine run it? ---------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || skip "not root (uid $(id -u)): network namespaces and TUN devices need root"
command -v ip >/dev/null 2>&1 || skip "no 'ip' command (install iproute2)"
command -v python3 >/dev/null 2>&1 || skip "no python3 (the kernel-side peer is a Python script)"
command -v tc >/dev/null 2>&1 || skip "no 'tc' command (install iproute2)"
[ -r /proc/sys/net/mptcp/enabled ] || skip "the kernel has no MPTCP (no net.mptcp.enabled)"
# A probe namespace left by a killed run must not make this look impossible.
ip netns del "${PREFIX}-probe" >/dev/null 2>&1 || true
if ! ip netns add "${PREFIX}-probe" >/dev/null 2>&1; then
    skip "cannot create network namespaces here"
fi
ip netns del "${PREFIX}-probe" >/dev/null 2>&1 || true
[ -e /dev/net/tun ] || modprobe tun >/dev/null 2>&1 || true
[ -e /dev/net/tun ] || skip "no /dev/net/tun (modprobe tun)"

# --- The binary ------------------------------------------------------------------------------
if [ -n "${MPTCP_TUN:-}" ]; then
    BIN=$MPTCP_TUN
else
    echo "== cargo build --release --bin mptcp-tun"
    (cd "$ROOT" && cargo build --release --quiet --bin mptcp-tun)
    BIN="$ROOT/target/release/mptcp-tun"
fi
[ -x "$BIN" ] || { echo "error: no mptcp-tun binary at $BIN" >&2; exit 1; }

WORK=$(mktemp -d /tmp/netns-demo.XXXXXX)
PIDS=()
topo() { MPT_PREFIX=$PREFIX MPT_TUN=$TUN MPT_PATH_BY=stack RATE1=$RATE RATE2=$RATE bash "$TOPOLOGY" "$@"; }
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    topo down >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

inr() { ip netns exec "$NS_R" "$@"; }
ins() { ip netns exec "$NS_S" "$@"; }

# The kernel's MPTcpExt counter NAME in S.
kcount() {
    ins nstat -az "MPTcpExt$1" 2>/dev/null | awk -v n="MPTcpExt$1" '$1 == n {print $2; f=1} END {if (!f) print 0}'
}

# Waits up to 10 s for FILE (a kpeer --ready-file) or for process PID to end.
wait_ready() {
    local file=$1 pid=$2 i
    for i in $(seq 100); do
        [ -e "$file" ] && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# summary LABEL JSON_FILE: our side's JSON in a few lines.
summary() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
label, path = sys.argv[1], sys.argv[2]
lines = [l for l in open(path).read().splitlines() if l.startswith("{")]
if not lines:
    print(f"  {label}: no JSON from mptcp-tun")
    sys.exit(0)
j = json.loads(lines[-1])
mode = "MPTCP" if j["mptcp"] else f"plain TCP ({j['fallback_reason']})"
print(f"  {label}: {j['bytes']} bytes in {j['secs']:.2f} s = {j['mbit_s']:.1f} Mbit/s, {mode}, "
      f"scheduler {j['scheduler']}")
for s in j["subflows"]:
    flags = " backup" if s["backup"] else ""
    print(f"    subflow {s['local']} -> {s['remote']}: sent {s['bytes_sent']} B, "
          f"received {s['bytes_received']} B, rtt {s['rtt_us'] / 1000:.1f} ms, {s['state']}{flags}")
c = j["counters"]
print(f"    our counters: add_addr_tx {c['add_addr_tx']}, echo_add_rx {c['echo_add_rx']}, "
      f"mp_join_synack_rx {c['mp_join_synack_rx']}, mp_join_ack_rx {c['mp_join_ack_rx']}")
EOF
}

# subflows_used JSON_FILE: how many subflows carried data (either way).
subflows_used() {
    python3 - "$1" <<'EOF'
import json, sys
lines = [l for l in open(sys.argv[1]).read().splitlines() if l.startswith("{")]
j = json.loads(lines[-1]) if lines else {"subflows": []}
print(sum(1 for s in j["subflows"] if s["bytes_sent"] > 0 or s["bytes_received"] > 0))
EOF
}

echo "== topology: $NS_R (TUN $TUN, $P1 + $P2) <-> $NS_S (kernel MPTCP), two paths at $RATE each"
topo up >"$WORK/topo.log" 2>&1 || {
    if grep -q '^skipped:' "$WORK/topo.log"; then
        skip "$(sed -n 's/^skipped: //p' "$WORK/topo.log" | head -1)"
    fi
    cat "$WORK/topo.log" >&2
    exit 1
}
grep -q '^skipped:' "$WORK/topo.log" && skip "$(sed -n 's/^skipped: //p' "$WORK/topo.log" | head -1)"
ins sysctl -qw net.mptcp.enabled=1
ins ip mptcp limits set subflows 4 add_addr_accepted 4 >/dev/null 2>&1 ||
    skip "the kernel refuses 'ip mptcp limits' (no MPTCP path manager)"

ok=1

# --- 1. our client -> kernel server ---------------------------------------------------------
echo
echo "== 1. our client ($P1 + $P2) sends $BYTES bytes to a kernel MPTCP server at $K1:5201"
echo "   ip netns exec $NS_S env KPEER_PROTO=262 python3 tests/interop/kpeer.py server 0.0.0.0 5201 recv $BYTES"
echo "   ip netns exec $NS_R mptcp-tun client --tun $TUN --addr $P1 --addr $P2 --connect $K1:5201 --send $BYTES --json"
join_syn0=$(kcount MPJoinSynRx)
join_ack0=$(kcount MPJoinAckRx)
ins env KPEER_PROTO=262 python3 "$KPEER" server 0.0.0.0 5201 recv "$BYTES" \
    --ready-file "$WORK/ready1" --deadline "$TIMEOUT" >"$WORK/kpeer1.log" 2>&1 &
kpid=$!
PIDS+=("$kpid")
if ! wait_ready "$WORK/ready1" "$kpid"; then
    echo "error: the kernel server did not start:" >&2
    cat "$WORK/kpeer1.log" >&2
    exit 1
fi
status=0
inr "$BIN" client --tun "$TUN" --addr "$P1" --addr "$P2" --connect "$K1:5201" --send "$BYTES" \
    --timeout "$TIMEOUT" --json >"$WORK/ours1.json" 2>"$WORK/ours1.err" || status=$?
kstatus=0
wait "$kpid" || kstatus=$?
summary "ours (client)" "$WORK/ours1.json"
echo "    kernel server: $(grep -h '^kpeer' "$WORK/kpeer1.log" | tail -1)"
echo "    kernel counters: MPJoinSynRx +$(($(kcount MPJoinSynRx) - join_syn0)), MPJoinAckRx +$(($(kcount MPJoinAckRx) - join_ack0))"
used=$(subflows_used "$WORK/ours1.json")
[[ $used =~ ^[0-9]+$ ]] || used=0   # unreadable JSON counts as no subflow
if [ "$status" -ne 0 ] || [ "$kstatus" -ne 0 ] || [ "$used" -lt 2 ] ||
    [ $(($(kcount MPJoinAckRx) - join_ack0)) -lt 1 ]; then
    echo "    FAILED: mptcp-tun exit $status, kpeer exit $kstatus, $used subflow(s) carried data"
    sed 's/^/    | /' "$WORK/ours1.err" >&2
    ok=0
else
    echo "    ok: verified by the kernel server, $used subflows carried data"
fi

# --- 2. kernel client -> our server (ADD_ADDR) ----------------------------------------------
echo
echo "== 2. a kernel MPTCP client sends $BYTES bytes to our server at $P1:5202, which announces $P2"
echo "   ip netns exec $NS_R mptcp-tun server --tun $TUN --addr $P1 --addr $P2 --announce $P2 --port 5202 --recv $BYTES --json"
echo "   ip netns exec $NS_S env KPEER_PROTO=262 python3 tests/interop/kpeer.py client $P1 5202 send $BYTES"
addaddr0=$(kcount AddAddr)
synack0=$(kcount MPJoinSynAckRx)
inr "$BIN" server --tun "$TUN" --addr "$P1" --addr "$P2" --announce "$P2" --port 5202 \
    --recv "$BYTES" --timeout "$TIMEOUT" --json >"$WORK/ours2.json" 2>"$WORK/ours2.err" &
opid=$!
PIDS+=("$opid")
# The server is ready once it holds the TUN open (the link loses NO-CARRIER).
for _ in $(seq 50); do
    inr ip link show "$TUN" | grep -q NO-CARRIER || break
    sleep 0.1
done
kstatus=0
ins env KPEER_PROTO=262 python3 "$KPEER" client "$P1" 5202 send "$BYTES" --deadline "$TIMEOUT" \
    >"$WORK/kpeer2.log" 2>&1 || kstatus=$?
status=0
wait "$opid" || status=$?
summary "ours (server)" "$WORK/ours2.json"
echo "    kernel client: $(grep -h '^kpeer' "$WORK/kpeer2.log" | tail -1)"
echo "    kernel counters: AddAddr +$(($(kcount AddAddr) - addaddr0)), MPJoinSynAckRx +$(($(kcount MPJoinSynAckRx) - synack0))"
used=$(subflows_used "$WORK/ours2.json")
[[ $used =~ ^[0-9]+$ ]] || used=0   # unreadable JSON counts as no subflow
if [ "$status" -ne 0 ] || [ "$kstatus" -ne 0 ] || [ "$used" -lt 2 ]; then
    echo "    FAILED: mptcp-tun exit $status, kpeer exit $kstatus, $used subflow(s) carried data"
    sed 's/^/    | /' "$WORK/ours2.err" "$WORK/kpeer2.log" >&2
    ok=0
else
    echo "    ok: verified by our server, $used subflows carried data"
fi

echo
if [ "$ok" = 1 ]; then
    echo "netns-demo: ok (both transfers verified, two subflows each)"
    exit 0
fi
echo "netns-demo: FAILED"
exit 1
