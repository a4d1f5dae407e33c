#!/usr/bin/env python3
"""Kernel-side peer for the interop tests and scripts (Python 3, standard library only).

    kpeer.py server BIND_ADDR PORT recv|send N [--ready-file PATH] [options]
    kpeer.py client HOST PORT recv|send N [--bind ADDR] [options]

Moves N bytes of the pattern byte[i] = i % 251 over one kernel stream socket,
socket.socket(family, SOCK_STREAM, proto) with proto from the environment variable
KPEER_PROTO (default 6 = TCP; 262 = IPPROTO_MPTCP).

  send  sends the N bytes, shuts down its write side (FIN), then reads to EOF; it succeeds if the
        peer closes cleanly without sending anything.
  recv  reads to EOF and verifies every byte; it succeeds only if exactly N bytes arrived and all
        of them match the pattern.

The server serves one connection and exits; with --ready-file it creates PATH once it listens,
so a caller need not sleep. Every socket operation has a timeout (--timeout, default 60 s) and
the whole run a deadline (--deadline, default none), so it never hangs.

Output: one result line on stdout,
    kpeer: verified N bytes in S s, R Mbit/s (proto P, PEER)      (recv)
    kpeer: sent N bytes in S s, R Mbit/s, peer closed (proto P, PEER)   (send)
and with --json, one JSON object after it as the last line: {"bytes":N,"secs":S,"mbit_s":R,...}.
Failures go to stderr as "kpeer: error: ...". Exit status: 0 success, 1 transfer failed,
2 usage error.
"""

import argparse
import json
import os
import socket
import sys
import time

PATTERN_MOD = 251
CHUNK = 256 * 1024
# A block of the pattern one period longer than a chunk: the bytes from stream offset `off` for
# up to CHUNK bytes are BLOCK[off % 251 : off % 251 + n].
BLOCK = bytes(range(PATTERN_MOD)) * (CHUNK // PATTERN_MOD + 2)


class Failure(Exception):
    """A transfer that did not complete or did not verify."""


def fail(msg):
    raise Failure(msg)


def family_of(host):
    """AF_INET6 for an IPv6 literal (with or without brackets), AF_INET for IPv4, else None."""
    host = host.strip("[]")
    for fam in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(fam, host)
            return fam
        except OSError:
            pass
    return None


def resolve(host, port, proto):
    host = host.strip("[]")
    fam = family_of(host)
    infos = socket.getaddrinfo(host, port, fam or socket.AF_UNSPEC, socket.SOCK_STREAM)
    if not infos:
        fail(f"cannot resolve {host}")
    fam, _, _, _, sockaddr = infos[0]
    return fam, sockaddr


def make_socket(fam, proto, timeout):
    try:
        s = socket.socket(fam, socket.SOCK_STREAM, proto)
    except OSError as e:
        fail(f"socket(family {fam}, SOCK_STREAM, proto {proto}): {e}")
    s.settimeout(timeout)
    return s


def first_mismatch(data, off):
    """Index in `data` of the first byte that breaks the pattern from stream offset `off`."""
    for i, b in enumerate(data):
        if b != (off + i) % PATTERN_MOD:
            return i
    return None


def do_send(sock, n, deadline):
    mv = memoryview(BLOCK)
    off = 0
    while off < n:
        check_deadline(deadline)
        start = off % PATTERN_MOD
        k = min(CHUNK, n - off)
        try:
            sent = sock.send(mv[start:start + k])
        except OSError as e:
            fail(f"send failed after {off} of {n} bytes: {e}")
        if sent == 0:
            fail(f"send returned 0 after {off} of {n} bytes")
        off += sent
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError as e:
        fail(f"shutdown(SHUT_WR) after {n} bytes: {e}")
    # Read to EOF: the peer closes once it has everything. Anything it sends is unexpected.
    extra = 0
    while True:
        check_deadline(deadline)
        try:
            data = sock.recv(CHUNK)
        except OSError as e:
            fail(f"all {n} bytes sent, but waiting for the peer's close: {e}")
        if not data:
            break
        extra += len(data)
    if extra:
        fail(f"all {n} bytes sent, but the peer sent {extra} unexpected bytes before closing")
    return n


def do_recv(sock, n, deadline):
    off = 0
    while True:
        check_deadline(deadline)
        try:
            data = sock.recv(CHUNK)
        except OSError as e:
            fail(f"recv failed after {off} of {n} bytes: {e}")
        if not data:
            break
        k = len(data)
        start = off % PATTERN_MOD
        if data != BLOCK[start:start + k]:
            bad = first_mismatch(data, off)
            got = data[bad]
            fail(
                f"corrupt data at byte {off + bad}: got {got}, expected {(off + bad) % PATTERN_MOD}"
            )
        off += k
        if off > n:
            fail(f"received more than the expected {n} bytes ({off} so far)")
    if off != n:
        fail(f"peer closed after {off} of {n} bytes")
    return off


def check_deadline(deadline):
    if deadline is not None and time.monotonic() > deadline:
        fail("deadline exceeded")


def transfer(sock, args, deadline, peer):
    start = time.monotonic()
    if args.direction == "send":
        done = do_send(sock, args.n, deadline)
    else:
        done = do_recv(sock, args.n, deadline)
    secs = max(time.monotonic() - start, 1e-9)
    mbit = done * 8 / secs / 1e6
    what = "verified" if args.direction == "recv" else "sent"
    tail = ", peer closed" if args.direction == "send" else ""
    print(
        f"kpeer: {what} {done} bytes in {secs:.6f} s, {mbit:.3f} Mbit/s{tail}"
        f" (proto {args.proto}, {args.mode}, peer {peer})",
        flush=True,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "bytes": done,
                    "secs": round(secs, 6),
                    "mbit_s": round(mbit, 3),
                    "mode": args.mode,
                    "direction": args.direction,
                    "proto": args.proto,
                    "peer": peer,
                    "verified": args.direction == "recv",
                },
                separators=(",", ":"),
            ),
            flush=True,
        )


def fmt_peer(addr):
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run_server(args, deadline):
    fam = family_of(args.host)
    if fam is None:
        fam, sockaddr = resolve(args.host, args.port, args.proto)
    else:
        sockaddr = (args.host.strip("[]"), args.port)
    lsock = make_socket(fam, args.proto, args.timeout)
    with lsock:
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            lsock.bind(sockaddr)
            lsock.listen(1)
        except OSError as e:
            fail(f"bind/listen on {fmt_peer(sockaddr)}: {e}")
        if args.ready_file:
            tmp = f"{args.ready_file}.tmp{os.getpid()}"
            with open(tmp, "w") as f:
                f.write(f"{fmt_peer(lsock.getsockname())}\n")
            os.replace(tmp, args.ready_file)
        try:
            conn, addr = lsock.accept()
        except OSError as e:
            fail(f"accept on {fmt_peer(sockaddr)}: {e}")
        # The listener stays open during the transfer: Linux handles MP_JOIN SYNs for the
        # connection through the listening socket of its port.
        with conn:
            conn.settimeout(args.timeout)
            transfer(conn, args, deadline, fmt_peer(addr))


def run_client(args, deadline):
    fam, sockaddr = resolve(args.host, args.port, args.proto)
    sock = make_socket(fam, args.proto, args.timeout)
    with sock:
        if args.bind:
            try:
                sock.bind((args.bind.strip("[]"), 0))
            except OSError as e:
                fail(f"bind to {args.bind}: {e}")
        try:
            sock.connect(sockaddr)
        except OSError as e:
            fail(f"connect to {fmt_peer(sockaddr)}: {e}")
        transfer(sock, args, deadline, fmt_peer(sockaddr))


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="kpeer.py",
        description="Kernel-side bulk-transfer peer: the pattern i %% 251, verified.",
    )
    p.add_argument("mode", choices=["server", "client"])
    p.add_argument("host", help="server: address to bind; client: host to connect to")
    p.add_argument("port", type=int)
    p.add_argument("direction", choices=["recv", "send"])
    p.add_argument("n", type=int, metavar="N", help="bytes to move")
    p.add_argument("--ready-file", metavar="PATH", help="server: create PATH once listening")
    p.add_argument("--bind", metavar="ADDR", help="client: source address")
    p.add_argument("--timeout", type=float, default=60.0, help="per-operation timeout (s)")
    p.add_argument("--deadline", type=float, default=None, help="whole-run limit (s)")
    p.add_argument("--json", action="store_true", help="also print one JSON object")
    args = p.parse_args(argv)
    if args.n < 0:
        p.error("N must be >= 0")
    try:
        args.proto = int(os.environ.get("KPEER_PROTO", "6"), 0)
    except ValueError:
        p.error("KPEER_PROTO must be an integer (6 = TCP, 262 = MPTCP)")
    return args


def main(argv):
    args = parse_args(argv)
    deadline = time.monotonic() + args.deadline if args.deadline else None
    try:
        if args.mode == "server":
            run_server(args, deadline)
        else:
            run_client(args, deadline)
    except Failure as e:
        print(f"kpeer: error: {e}", file=sys.stderr, flush=True)
        return 1
    except OSError as e:
        print(f"kpeer: error: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
