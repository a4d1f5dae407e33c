#!/usr/bin/env python3
"""Helpers of scripts/multipath-bench.sh (Python 3, standard library only).

    mpbench.py recv BIND_ADDR PORT N --log FILE [--start-file PATH] [--ready-file PATH] [options]
    mpbench.py fault --start-file PATH --after SECS -- COMMAND...
    mpbench.py analyze --log FILE [--event T] [--ref-mbit R] [--frac 0.9] [--sustain 3]
                       [--fault-file F] [--sender-out F] [--meta KEY=VALUE ...]
    mpbench.py line < RECORD
    mpbench.py summarize FILE.jsonl

recv     Serves one connection on a kernel stream socket (proto from --proto, default the
         environment's KPEER_PROTO, else 262 = IPPROTO_MPTCP), reads to EOF and verifies every
         byte against the pattern byte[i] = i % 251, like tests/interop/kpeer.py. It logs the
         bytes delivered to the application in every --interval (default 50 ms) since the
         accept, and every pause between two successive reads longer than 20 ms, to --log.
         Times are CLOCK_MONOTONIC, the same in every network namespace. With --start-file it
         writes the accept time there. The log is written even when the transfer fails (reset,
         timeout, short), so a failover that never recovers is still measured.
         Last line of stdout: one JSON object {"bytes", "complete", "verified", "error",
         "mbit_s" (first byte to last byte), ...}. Exit 0 only if exactly N verified bytes
         arrived and the peer closed.
fault    Waits for the start file, sleeps until accept time + SECS, runs COMMAND and prints
         {"t_event": monotonic time just before COMMAND, "t_done": just after, "rc": status}.
analyze  Reads a recv log and prints one JSON object: the goodput, and with --event the
         failover figures: recover_s, the time from the event until the goodput is at least
         frac * ref-mbit in --sustain consecutive intervals (null if never); max_gap_s, the
         longest pause with no byte delivered that ends after the event (also as whole zero
         intervals, zero_run_s); and the goodput before and after the event. --meta, the
         fault's JSON and the sender's last JSON line are copied into the record.
line     One human line for a record of `analyze`.
summarize  Prints the table of scripts/multipath-bench.sh (medians per case and stack) and
         appends one "summary" JSON line per case and stack to FILE.

Log format (text): a first line "# {json header}", then "bin INDEX BYTES" for every interval
with bytes, and "gap T_START DURATION" (seconds since the accept) for every pause > 20 ms.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time

PATTERN_MOD = 251
CHUNK = 256 * 1024
BLOCK = bytes(range(PATTERN_MOD)) * (CHUNK // PATTERN_MOD + 2)
GAP_LOG_S = 0.02


def write_atomic(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def cmd_recv(args):
    proto = args.proto
    if proto is None:
        proto = int(os.environ.get("KPEER_PROTO", "262"), 0)
    fam = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    deadline = time.monotonic() + args.deadline if args.deadline else None
    bins = []
    gaps = []
    res = {"bytes": 0, "complete": False, "verified": True, "error": None, "proto": proto}
    t0 = None
    t_first = t_last = None
    off = 0
    lsock = socket.socket(fam, socket.SOCK_STREAM, proto)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.settimeout(args.timeout)
    try:
        lsock.bind((args.host.strip("[]"), args.port))
        lsock.listen(1)
        if args.ready_file:
            write_atomic(args.ready_file, f"{args.host}:{args.port}\n")
        conn, peer = lsock.accept()
        t0 = time.monotonic()
        res["peer"] = f"{peer[0]}:{peer[1]}"
        if args.start_file:
            write_atomic(args.start_file, f"{t0:.6f}\n")
        conn.settimeout(args.timeout)
        with conn:
            t_prev = t0
            while True:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError("deadline exceeded")
                data = conn.recv(CHUNK)
                now = time.monotonic()
                if not data:
                    break
                k = len(data)
                start = off % PATTERN_MOD
                if data != BLOCK[start:start + k]:
                    bad = next(i for i, b in enumerate(data) if b != (off + i) % PATTERN_MOD)
                    res["verified"] = False
                    raise ValueError(f"corrupt data at byte {off + bad}")
                if t_first is None:
                    t_first = now
                elif now - t_prev > GAP_LOG_S:
                    gaps.append((t_prev - t0, now - t_prev))
                t_prev = t_last = now
                off += k
                i = int((now - t0) / args.interval)
                if i >= len(bins):
                    bins.extend([0] * (i + 1 - len(bins)))
                bins[i] += k
                if off > args.n:
                    raise ValueError(f"received more than the expected {args.n} bytes")
        if off != args.n:
            raise ValueError(f"peer closed after {off} of {args.n} bytes")
        res["complete"] = True
    except (OSError, ValueError, TimeoutError) as e:
        res["error"] = f"{type(e).__name__}: {e}"
        # A pause that lasted until the failure counts as a gap too.
        if t_last is not None:
            gaps.append((t_last - t0, time.monotonic() - t_last))
    finally:
        lsock.close()
    res["bytes"] = off
    if t_first is not None and t_last is not None and t_last > t_first:
        res["secs"] = round(t_last - t_first, 6)
        res["mbit_s"] = round(off * 8 / (t_last - t_first) / 1e6, 3)
    else:
        res["secs"] = 0.0
        res["mbit_s"] = 0.0
    header = {
        "t0": t0,
        "t_first": None if t_first is None else t_first - t0,
        "t_last": None if t_last is None else t_last - t0,
        "interval": args.interval,
        **res,
    }
    with open(args.log, "w") as f:
        f.write("# " + json.dumps(header, separators=(",", ":")) + "\n")
        for i, b in enumerate(bins):
            if b:
                f.write(f"bin {i} {b}\n")
        for s, d in gaps:
            f.write(f"gap {s:.6f} {d:.6f}\n")
    print(json.dumps(res, separators=(",", ":")), flush=True)
    return 0 if res["complete"] and res["verified"] else 1


def cmd_fault(args):
    limit = time.monotonic() + args.wait
    while not os.path.exists(args.start_file):
        if time.monotonic() > limit:
            print(json.dumps({"t_event": None, "error": "no start file"}), flush=True)
            return 1
        time.sleep(0.005)
    with open(args.start_file) as f:
        t0 = float(f.read().strip())
    delay = t0 + args.after - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    t_event = time.monotonic()
    rc = subprocess.run(args.command, check=False).returncode
    t_done = time.monotonic()
    out = {"t_event": round(t_event, 6), "t_done": round(t_done, 6), "rc": rc}
    print(json.dumps(out, separators=(",", ":")), flush=True)
    return 0 if rc == 0 else 1


def read_log(path):
    header = None
    bins = {}
    gaps = []
    with open(path) as f:
        for line in f:
            if line.startswith("# "):
                header = json.loads(line[2:])
            elif line.startswith("bin "):
                _, i, b = line.split()
                bins[int(i)] = int(b)
            elif line.startswith("gap "):
                _, s, d = line.split()
                gaps.append((float(s), float(d)))
    if header is None:
        raise SystemExit(f"mpbench: {path}: no header")
    return header, bins, gaps


def cmd_analyze(args):
    h, bins, gaps = read_log(args.log)
    iv = h["interval"]
    out = {
        "bytes": h["bytes"],
        "complete": h["complete"],
        "error": h["error"],
        "mbit_s": h["mbit_s"],
    }
    last = max(bins) if bins else -1
    # Steady goodput: from --skip seconds after the first byte to the last full interval.
    if h.get("t_first") is not None and last >= 0:
        lo = int((h["t_first"] + args.skip) / iv)
        hi = last  # the last interval is partial
        if hi > lo:
            b = sum(bins.get(i, 0) for i in range(lo, hi))
            out["steady_mbit_s"] = round(b * 8 / ((hi - lo) * iv) / 1e6, 3)
    if args.event is None or h.get("t0") is None:
        emit(out, args)
        return 0
    te = args.event - h["t0"]  # event time, seconds since the accept
    out["event_s"] = round(te, 6)
    need = args.frac * args.ref_mbit * 1e6 / 8 * iv  # bytes per interval
    first = int(te / iv) + 1  # the first interval that starts after the event
    recover = None
    end = last if h["complete"] else last + 1
    for i in range(first, end - args.sustain + 1):
        if all(bins.get(j, 0) >= need for j in range(i, i + args.sustain)):
            recover = i * iv - te
            break
    out["recover_s"] = None if recover is None else round(recover, 3)
    out["recover_threshold_mbit_s"] = round(args.frac * args.ref_mbit, 3)
    # Longest pause that ends after the event (a pause still running at the failure counts).
    gmax = 0.0
    for s, d in gaps:
        if s + d > te:
            gmax = max(gmax, d)
    out["max_gap_s"] = round(gmax, 3)
    # The last pause ran until the failure: the real gap is at least this long.
    out["max_gap_censored"] = bool(
        not h["complete"] and gaps and gaps[-1][1] >= gmax and gaps[-1][0] + gaps[-1][1] > te
    )
    run = best = 0
    for i in range(first, end):
        run = run + 1 if bins.get(i, 0) == 0 else 0
        best = max(best, run)
    out["zero_run_s"] = round(best * iv, 3)
    pre_lo = int((h["t_first"] + args.skip) / iv) if h.get("t_first") is not None else 0
    pre_hi = int(te / iv)
    if pre_hi > pre_lo:
        b = sum(bins.get(i, 0) for i in range(pre_lo, pre_hi))
        out["before_mbit_s"] = round(b * 8 / ((pre_hi - pre_lo) * iv) / 1e6, 3)
    if recover is not None:
        lo = first + int(round(recover / iv)) if recover > 0 else first
        if end - 1 > lo:
            b = sum(bins.get(i, 0) for i in range(lo, end - 1))
            out["after_mbit_s"] = round(b * 8 / ((end - 1 - lo) * iv) / 1e6, 3)
    emit(out, args)
    return 0


def last_json(path):
    """The last line of a file that parses as a JSON object, or None."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                pass
    return None


def emit(out, args):
    rec = {}
    for kv in args.meta:
        k, _, v = kv.partition("=")
        try:
            v = int(v)
        except ValueError:
            try:
                v = float(v)
            except ValueError:
                pass
        rec[k] = v
    rec.update(out)
    if args.fault_file:
        rec["fault"] = last_json(args.fault_file)
    if args.sender_out:
        rec["sender"] = last_json(args.sender_out)
    print(json.dumps(rec, separators=(",", ":")))


def fmt_s(v):
    return "never" if v is None else f"{v:.2f}s"


def cmd_line(args):
    """One human line for a "run" record on stdin."""
    r = json.loads(sys.stdin.read())
    s = f"{r['stack']:>6} {r['case']:<9} rep {r['rep']}: {r['mbit_s']:7.1f} Mbit/s"
    s += f" ({r['bytes']}/{r['bytes_expected']} B, rc {r['sender_rc']}/{r['receiver_rc']})"
    if "event_s" in r:
        s += f", recover {fmt_s(r['recover_s'])}, max gap {gapfmt(r)}s"
    if r.get("error"):
        s += f" [{r['error']}]"
    print(s)
    return 0


def gapfmt(r):
    g = r.get("max_gap_s")
    if g is None:
        return "?"
    return (">=" if r.get("max_gap_censored") else "") + f"{g:.2f}"


def median(vals):
    """Median; None counts as +infinity ("never"). None if vals is empty."""
    if not vals:
        return None
    inf = float("inf")
    v = sorted(inf if x is None else x for x in vals)
    n = len(v)
    m = v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
    return None if m == inf else m


def cmd_summarize(args):
    runs, rtts = [], []
    with open(args.file) as f:
        for line in f:
            r = json.loads(line)
            if r.get("kind") == "run":
                runs.append(r)
            elif r.get("kind") == "rtt":
                rtts.append(r)
    cases = []
    for r in runs:
        if r["case"] not in cases:
            cases.append(r["case"])
    summaries = []
    rows = []
    for case in cases:
        cells = {}
        for stack in ("kernel", "ours"):
            rs = [r for r in runs if r["case"] == case and r["stack"] == stack]
            if not rs:
                cells[stack] = "-"
                continue
            ok = [r for r in rs if r["complete"]]
            mb = [r["mbit_s"] for r in ok]
            sm = {
                "kind": "summary",
                "case": case,
                "stack": stack,
                "reps": len(rs),
                "complete": len(ok),
                "nominal_mbit": rs[0]["nominal_mbit"],
                "rate1": rs[0]["rate1"],
                "rate2": rs[0]["rate2"],
                "mbit_s_median": median(mb),
                "mbit_s_min": min(mb) if mb else None,
                "mbit_s_max": max(mb) if mb else None,
            }
            if sm["mbit_s_median"] is not None:
                sm["fraction_median"] = round(sm["mbit_s_median"] / sm["nominal_mbit"], 3)
            if "event_s" in rs[0]:
                rec = [r.get("recover_s") for r in rs]
                gap = [r.get("max_gap_s") for r in rs]
                sm.update(
                    recover_s_median=median(rec),
                    recover_s_all=rec,
                    max_gap_s_median=median(gap),
                    max_gap_s_all=gap,
                    recovered=sum(x is not None for x in rec),
                )
                cell = (
                    f"recover {fmt_s(sm['recover_s_median'])} "
                    f"[{', '.join(fmt_s(x) for x in rec)}]; "
                    f"max gap {'>=' if any(r.get('max_gap_censored') for r in rs) else ''}"
                    f"{sm['max_gap_s_median']:.2f}s "
                    f"[{', '.join(gapfmt(r) for r in rs)}]; "
                    f"done {len(ok)}/{len(rs)}"
                )
            else:
                if mb:
                    cell = (
                        f"{sm['mbit_s_median']:.1f} Mbit/s ({sm['fraction_median']:.2f} of "
                        f"{sm['nominal_mbit']:g}) [{min(mb):.1f}-{max(mb):.1f}]"
                    )
                else:
                    cell = "FAILED"
                if len(ok) < len(rs):
                    cell += f" done {len(ok)}/{len(rs)}"
            cells[stack] = cell
            summaries.append(sm)
        r0 = next(r for r in runs if r["case"] == case)
        label = f"{case} ({r0['rate1']})" if case == "single" else (
            f"{case} ({r0['rate1']}+{r0['rate2']})"
        )
        rows.append((label, cells["kernel"], cells["ours"]))
    with open(args.file, "a") as f:
        for sm in summaries:
            f.write(json.dumps(sm, separators=(",", ":")) + "\n")
    print()
    print("RTT (ping, ms: min/avg/max)")
    for r in rtts:
        if "avg_ms" in r:
            print(f"  {r['stack']:<9} path {r['path']} {r['state']:<7}"
                  f" {r['min_ms']:.3f}/{r['avg_ms']:.3f}/{r['max_ms']:.3f}  ({r['ping']})")
        else:
            print(f"  {r['stack']:<9} path {r['path']} {r['state']:<7} no reply ({r['ping']})")
    print()
    print("goodput: median [min-max] of the receiver's verified Mbit/s; failover: median [each rep]")
    w0 = max([len("case")] + [len(r[0]) for r in rows])
    w1 = max([len("kernel")] + [len(r[1]) for r in rows])
    print(f"{'case':<{w0}}  {'kernel':<{w1}}  ours")
    for label, k, o in rows:
        print(f"{label:<{w0}}  {k:<{w1}}  {o}")
    return 0


def main(argv):
    p = argparse.ArgumentParser(prog="mpbench.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("recv", help="verifying receiver with a per-interval goodput log")
    r.add_argument("host")
    r.add_argument("port", type=int)
    r.add_argument("n", type=int, metavar="N")
    r.add_argument("--log", required=True)
    r.add_argument("--start-file")
    r.add_argument("--ready-file")
    r.add_argument("--interval", type=float, default=0.05)
    r.add_argument("--proto", type=lambda s: int(s, 0), default=None)
    r.add_argument("--timeout", type=float, default=30.0, help="per-operation timeout (s)")
    r.add_argument("--deadline", type=float, default=None, help="whole-run limit (s)")
    f = sub.add_parser("fault", help="run a command at a time after the accept")
    f.add_argument("--start-file", required=True)
    f.add_argument("--after", type=float, required=True)
    f.add_argument("--wait", type=float, default=30.0, help="give up waiting for the start file")
    f.add_argument("command", nargs="+")
    a = sub.add_parser("analyze", help="goodput and failover figures from a recv log")
    a.add_argument("--log", required=True)
    a.add_argument("--event", type=float, default=None, help="monotonic time of the fault")
    a.add_argument("--ref-mbit", type=float, default=100.0, help="the surviving path's rate")
    a.add_argument("--frac", type=float, default=0.9)
    a.add_argument("--sustain", type=int, default=3)
    a.add_argument("--skip", type=float, default=1.0, help="seconds of start-up left out")
    a.add_argument("--fault-file", help="the output of `fault`, copied into the record")
    a.add_argument("--sender-out", help="the sender's stdout; its last JSON line is copied")
    a.add_argument("--meta", action="append", default=[], help="KEY=VALUE for the record")
    sub.add_parser("line", help="one human line for a record on stdin")
    sm = sub.add_parser("summarize", help="table and per-case medians of a JSON lines file")
    sm.add_argument("file")
    args = p.parse_args(argv)
    return {
        "recv": cmd_recv,
        "fault": cmd_fault,
        "analyze": cmd_analyze,
        "line": cmd_line,
        "summarize": cmd_summarize,
    }[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
