#!/usr/bin/env bash
# Test topology of DESIGN.md ("Tests"), in two network namespaces made here:
#
#   namespace R (${PREFIX}-r): the TUN of the userspace stack (no address) + two veths; routes only
#   namespace S (${PREFIX}-s): the kernel peer
#
#       [stack on TUN]                 R                              S (kernel MPTCP)
#   198.18.101.1, 2001:db8:101::1  --TUN--  ${PREFIX}-r1 198.18.1.1 ==== 198.18.1.2 ${PREFIX}-s1  (path 1)
#   198.18.102.1, 2001:db8:102::1           ${PREFIX}-r2 198.18.2.1 ==== 198.18.2.2 ${PREFIX}-s2  (path 2)
#                                           (IPv6: 2001:db8:1::1/::2 and 2001:db8:2::1/::2)
#
# R routes 198.18.101.0/24, 198.18.102.0/24, 2001:db8:101::/48 and 2001:db8:102::/48 into the
# TUN and forwards. S reaches 198.18.101.0/24 over path 1 and 198.18.102.0/24 over path 2, and
# policy rules send whatever S sources from its path-N address over path N; R answers each S
# address over its own veth. So every (S address, stack address) pair keeps one path both ways.
# The process that uses the TUN must run inside R:  ip netns exec ${PREFIX}-r <command>
#
# Which path a "crossed" pair takes (a path-1 address with a path-2 address, e.g. a join from
# 198.18.102.1 to 198.18.1.2) is chosen by MPT_PATH_BY:
#   peer   (default) the S address chooses: 198.18.102.1 <-> 198.18.1.2 travels path 1. Right
#          when the kernel in S is the client and opens subflows from its own addresses.
#   stack  the stack address chooses: 198.18.102.1 <-> 198.18.1.2 travels path 2 (R: rules
#          "from 198.18.10N.0/24" (pref 1101/1102) -> table 20N, default via S's path-N address
#          over PREFIX-rN; S: rules "to 198.18.10N.0/24" (pref 901/902) -> table 10N, ahead of
#          its "from" rules; IPv6 the same with 2001:db8:10N::/48). Right when the stack is the
#          client and opens a subflow from each of its addresses, or when it announces one.
# `path-by MODE` switches a live topology (idempotent; it also restores the routes of tables
# 201/202 after a link of R went down and up again).
#
# Usage: topology.sh up|down|tun-routes|show|path-by peer|stack
#   up          build everything (removes leftovers of the same prefix first)
#   down        remove everything made by `up` with this prefix, by name; idempotent
#   tun-routes  add the routes into the TUN (for MPT_CREATE_TUN=0, once the driver made it)
#   show        print addresses, routes, rules and qdiscs of both namespaces
#   path-by     switch the rules for crossed pairs (see above)
#
# Environment:
#   MPT_PREFIX      name prefix, at most 12 characters (default "mpt"): namespaces
#                   PREFIX-r and PREFIX-s, veths PREFIX-r1/-s1 and PREFIX-r2/-s2
#   MPT_TUN         TUN device name inside R (default "mptun0")
#   MPT_CREATE_TUN  1 (default): create the TUN with `ip tuntap add` so the driver opens it;
#                   0: the driver creates it, then call `tun-routes`
#   MPT_MTU         TUN MTU (default 1500)
#   RATE1, RATE2    optional tbf rate on both ends of path 1 / path 2 (e.g. 100mbit)
#   BURST, LATENCY  tbf burst (default 64kb) and latency (default 50ms)
#   MPT_PATH_BY     peer (default) or stack: see above
#   MPT_SKIP_CODE   exit status when the machine cannot run this (default 0); the output then
#                   starts with "skipped: <reason>"
#
# Requires root, iproute2 and network namespace support; ethtool is used when present.

set -Eeuo pipefail

PREFIX=${MPT_PREFIX:-mpt}
TUN=${MPT_TUN:-mptun0}
CREATE_TUN=${MPT_CREATE_TUN:-1}
MTU=${MPT_MTU:-1500}
BURST=${BURST:-64kb}
LATENCY=${LATENCY:-50ms}
SKIP_CODE=${MPT_SKIP_CODE:-0}
PATH_BY=${MPT_PATH_BY:-peer}

NS_R="${PREFIX}-r"
NS_S="${PREFIX}-s"
R1="${PREFIX}-r1"
R2="${PREFIX}-r2"
S1="${PREFIX}-s1"
S2="${PREFIX}-s2"

skip() {
    echo "skipped: $*"
    exit "$SKIP_CODE"
}

note() {
    echo "note: $*" >&2
}

inr() { ip netns exec "$NS_R" "$@"; }
ins() { ip netns exec "$NS_S" "$@"; }

ns_exists() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -x "$1" >/dev/null
}

check_names() {
    if [ "${#PREFIX}" -gt 12 ] || ! [[ "$PREFIX" =~ ^[A-Za-z0-9_-]+$ ]]; then
        echo "error: MPT_PREFIX must be 1-12 characters of [A-Za-z0-9_-]" >&2
        exit 2
    fi
    if [ "${#TUN}" -gt 15 ] || ! [[ "$TUN" =~ ^[A-Za-z0-9_.-]+$ ]]; then
        echo "error: MPT_TUN must be 1-15 characters of [A-Za-z0-9_.-]" >&2
        exit 2
    fi
}

preflight() {
    [ "$(id -u)" -eq 0 ] || skip "not root (uid $(id -u))"
    command -v ip >/dev/null 2>&1 || skip "no 'ip' command (install iproute2)"
    ip -V >/dev/null 2>&1 || skip "'ip' does not run"
    if ! ip netns add "${PREFIX}-probe" >/dev/null 2>&1; then
        skip "cannot create network namespaces here"
    fi
    ip netns del "${PREFIX}-probe" >/dev/null 2>&1 || true
}

down() {
    # Deleting a namespace destroys the veths and the TUN inside it; delete the links first
    # anyway so nothing lingers while a process still holds the namespace open.
    if ns_exists "$NS_R"; then
        inr ip link del "$R1" >/dev/null 2>&1 || true
        inr ip link del "$R2" >/dev/null 2>&1 || true
        inr ip tuntap del dev "$TUN" mode tun >/dev/null 2>&1 || true
        ip netns del "$NS_R" >/dev/null 2>&1 || true
    fi
    if ns_exists "$NS_S"; then
        ip netns del "$NS_S" >/dev/null 2>&1 || true
    fi
    # A veth left in the root namespace by a half-made `up`.
    ip link del "$R1" >/dev/null 2>&1 || true
    ip link del "$R2" >/dev/null 2>&1 || true
    ip netns del "${PREFIX}-probe" >/dev/null 2>&1 || true
}

sysctl_w() {
    # sysctl_w NS KEY VALUE: set a sysctl inside a namespace; a missing key is only a note.
    local ns=$1 key=$2 value=$3
    if ! ip netns exec "$ns" sysctl -qw "$key=$value" >/dev/null 2>&1; then
        note "sysctl $key=$value not applied in $ns"
    fi
}

tun_routes() {
    inr ip link set dev "$TUN" mtu "$MTU" up
    inr ip route replace 198.18.101.0/24 dev "$TUN"
    inr ip route replace 198.18.102.0/24 dev "$TUN"
    inr ip -6 route replace 2001:db8:101::/48 dev "$TUN"
    inr ip -6 route replace 2001:db8:102::/48 dev "$TUN"
}

offload_off() {
    local ns=$1 dev=$2
    if command -v ethtool >/dev/null 2>&1; then
        ip netns exec "$ns" ethtool -K "$dev" gso off tso off gro off >/dev/null 2>&1 ||
            note "ethtool could not turn offloads off on $dev"
    else
        note "ethtool not installed: GSO/TSO left on for $dev"
    fi
}

shape() {
    local ns=$1 dev=$2 rate=$3
    [ -n "$rate" ] || return 0
    ip netns exec "$ns" tc qdisc replace dev "$dev" root tbf rate "$rate" burst "$BURST" latency "$LATENCY"
}

# path_by peer|stack: the rules for crossed pairs (see the header).
path_by() {
    local mode=$1 pref
    case "$mode" in peer | stack) ;; *)
        echo "error: path-by takes peer or stack, not '$mode'" >&2
        exit 2
        ;;
    esac
    # Remove the stack-mode rules (by their preferences, which nothing else uses) and tables.
    for pref in 1101 1102; do
        while inr ip rule del pref "$pref" >/dev/null 2>&1; do :; done
        while inr ip -6 rule del pref "$pref" >/dev/null 2>&1; do :; done
    done
    for pref in 901 902; do
        while ins ip rule del pref "$pref" >/dev/null 2>&1; do :; done
        while ins ip -6 rule del pref "$pref" >/dev/null 2>&1; do :; done
    done
    inr ip route flush table 201 >/dev/null 2>&1 || true
    inr ip route flush table 202 >/dev/null 2>&1 || true
    inr ip -6 route flush table 201 >/dev/null 2>&1 || true
    inr ip -6 route flush table 202 >/dev/null 2>&1 || true
    [ "$mode" = stack ] || return 0
    inr ip route replace default via 198.18.1.2 dev "$R1" table 201
    inr ip route replace default via 198.18.2.2 dev "$R2" table 202
    inr ip -6 route replace default via 2001:db8:1::2 dev "$R1" table 201
    inr ip -6 route replace default via 2001:db8:2::2 dev "$R2" table 202
    inr ip rule add from 198.18.101.0/24 table 201 pref 1101
    inr ip rule add from 198.18.102.0/24 table 202 pref 1102
    inr ip -6 rule add from 2001:db8:101::/48 table 201 pref 1101
    inr ip -6 rule add from 2001:db8:102::/48 table 202 pref 1102
    ins ip rule add to 198.18.101.0/24 table 101 pref 901
    ins ip rule add to 198.18.102.0/24 table 102 pref 902
    ins ip -6 rule add to 2001:db8:101::/48 table 101 pref 901
    ins ip -6 rule add to 2001:db8:102::/48 table 102 pref 902
}

up() {
    case "$PATH_BY" in peer | stack) ;; *)
        echo "error: MPT_PATH_BY must be peer or stack, not '$PATH_BY'" >&2
        exit 2
        ;;
    esac
    down
    trap 'status=$?; echo "error: topology up failed (line $LINENO); removing it" >&2; down; exit $status' ERR

    ip netns add "$NS_R"
    ip netns add "$NS_S"
    for ns in "$NS_R" "$NS_S"; do
        ip netns exec "$ns" ip link set lo up
        # No DAD: addresses and link-locals usable at once.
        sysctl_w "$ns" net.ipv6.conf.all.accept_dad 0
        sysctl_w "$ns" net.ipv6.conf.default.accept_dad 0
        sysctl_w "$ns" net.ipv4.conf.all.rp_filter 0
        sysctl_w "$ns" net.ipv4.conf.default.rp_filter 0
    done
    sysctl_w "$NS_R" net.ipv4.ip_forward 1
    sysctl_w "$NS_R" net.ipv6.conf.all.forwarding 1

    ip link add "$R1" netns "$NS_R" type veth peer name "$S1" netns "$NS_S"
    ip link add "$R2" netns "$NS_R" type veth peer name "$S2" netns "$NS_S"

    inr ip addr add 198.18.1.1/24 dev "$R1"
    inr ip addr add 198.18.2.1/24 dev "$R2"
    inr ip -6 addr add 2001:db8:1::1/64 dev "$R1" nodad
    inr ip -6 addr add 2001:db8:2::1/64 dev "$R2" nodad
    ins ip addr add 198.18.1.2/24 dev "$S1"
    ins ip addr add 198.18.2.2/24 dev "$S2"
    ins ip -6 addr add 2001:db8:1::2/64 dev "$S1" nodad
    ins ip -6 addr add 2001:db8:2::2/64 dev "$S2" nodad
    for dev in "$R1" "$R2"; do inr ip link set "$dev" up; done
    for dev in "$S1" "$S2"; do ins ip link set "$dev" up; done

    # S: main table sends each stack prefix over its path; the policy rules pin what S sources
    # from a path's address to that path, for any stack address.
    ins ip route add 198.18.101.0/24 via 198.18.1.1 dev "$S1"
    ins ip route add 198.18.102.0/24 via 198.18.2.1 dev "$S2"
    ins ip -6 route add 2001:db8:101::/48 via 2001:db8:1::1 dev "$S1"
    ins ip -6 route add 2001:db8:102::/48 via 2001:db8:2::1 dev "$S2"
    ins ip route add 198.18.0.0/16 via 198.18.1.1 dev "$S1" table 101
    ins ip route add 198.18.0.0/16 via 198.18.2.1 dev "$S2" table 102
    ins ip -6 route add 2001:db8::/32 via 2001:db8:1::1 dev "$S1" table 101
    ins ip -6 route add 2001:db8::/32 via 2001:db8:2::1 dev "$S2" table 102
    ins ip rule add from 198.18.1.2 table 101 pref 1001
    ins ip rule add from 198.18.2.2 table 102 pref 1002
    ins ip -6 rule add from 2001:db8:1::2 table 101 pref 1001
    ins ip -6 rule add from 2001:db8:2::2 table 102 pref 1002
    path_by "$PATH_BY"

    for dev in "$R1" "$R2"; do offload_off "$NS_R" "$dev"; done
    for dev in "$S1" "$S2"; do offload_off "$NS_S" "$dev"; done
    shape "$NS_R" "$R1" "${RATE1:-}"
    shape "$NS_S" "$S1" "${RATE1:-}"
    shape "$NS_R" "$R2" "${RATE2:-}"
    shape "$NS_S" "$S2" "${RATE2:-}"

    # Kernel MPTCP in S (the interop tests need it; the ping test does not).
    sysctl_w "$NS_S" net.mptcp.enabled 1
    if ! ins ip mptcp limits set subflows 4 add_addr_accepted 4 >/dev/null 2>&1; then
        note "no kernel MPTCP in $NS_S ('ip mptcp limits' failed)"
    fi

    if [ "$CREATE_TUN" = 1 ]; then
        if ! inr ip tuntap add dev "$TUN" mode tun; then
            down
            trap - ERR
            skip "cannot create TUN device $TUN (no /dev/net/tun?)"
        fi
        tun_routes
    fi
    trap - ERR
    echo "up: $NS_R (TUN $TUN, $R1, $R2) <-> $NS_S ($S1, $S2), crossed pairs by $PATH_BY"
}

show() {
    for ns in "$NS_R" "$NS_S"; do
        echo "== $ns"
        ns_exists "$ns" || { echo "(absent)"; continue; }
        ip netns exec "$ns" ip -br addr
        ip netns exec "$ns" ip route
        ip netns exec "$ns" ip -6 route
        ip netns exec "$ns" ip rule
        ip netns exec "$ns" ip -6 rule
        ip netns exec "$ns" tc qdisc show
    done
}

check_names
case "${1:-}" in
up)
    preflight
    up
    ;;
down)
    [ "$(id -u)" -eq 0 ] || skip "not root (uid $(id -u))"
    command -v ip >/dev/null 2>&1 || skip "no 'ip' command (install iproute2)"
    down
    echo "down: $NS_R $NS_S"
    ;;
tun-routes)
    tun_routes
    ;;
show)
    show
    ;;
path-by)
    path_by "${2:-}"
    ;;
*)
    echo "usage: $0 up|down|tun-routes|show|path-by peer|stack   (see the header of this script)" >&2
    exit 2
    ;;
esac
