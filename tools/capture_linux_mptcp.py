#!/usr/bin/env python3
"""Capture real Linux kernel MPTCP packets for the known-answer tests in tests/linux_capture.rs.

Needs root. For each scenario it:

- opens two TUN devices (IFF_TUN | IFF_NO_PI, no vnet header, no offloads: the kernel hands us
  fully checksummed packets; every captured checksum is verified here before it is written),
- moves each into a network namespace of its own (client and server), addresses and routes them
  with test addresses only (198.18.0.0/16, 2001:db8::/32), enables MPTCP in both,
- runs a Python MPTCP server (socket(AF_INET*, SOCK_STREAM, IPPROTO_MPTCP=262)) in the server
  namespace and a client in the client namespace: the client sends DATA_LEN bytes of i % 251, the
  server answers ECHO_LEN bytes of the same pattern, the client closes, then the server,
- relays TCP packets between the two TUN fds, recording each one with its direction, for a
  bounded time, and exits on its own,
- removes the namespaces and devices it created (by name), even on failure.

Output: tests/data/linux_mptcp_<scenario>.hex, one packet a line, `c2s <hex>` or `s2c <hex>`,
after `#` comment lines naming the scenario and the kernel (`uname -r`).

Usage: sudo python3 tools/capture_linux_mptcp.py [--out tests/data] [scenario ...]
Scenarios: v4, v6, v4_csum, v4_addaddr.
"""

import argparse
import fcntl
import os
import select
import struct
import subprocess
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000

NS_CLIENT = "mptcpcap-c"
NS_SERVER = "mptcpcap-s"
TUN_CLIENT = "mpcaptun-c"
TUN_SERVER = "mpcaptun-s"

PORT = 8080
DATA_LEN = 3000
ECHO_LEN = 100
MAX_PACKETS = 60
SCENARIO_TIMEOUT = 12.0  # seconds, whole scenario
QUIET_AFTER_EXIT = 1.5  # seconds without packets after both ends exited

SCENARIOS = {
    "v4": {
        "family": 4,
        "client": "198.18.201.1",
        "server": "198.18.201.2",
        "checksum": False,
        "signal": None,
        "desc": "IPv4, DSS checksums off",
    },
    "v6": {
        "family": 6,
        "client": "2001:db8:201::1",
        "server": "2001:db8:201::2",
        "checksum": False,
        "signal": None,
        "desc": "IPv6, DSS checksums off",
    },
    "v4_csum": {
        "family": 4,
        "client": "198.18.201.1",
        "server": "198.18.201.2",
        "checksum": True,
        "signal": None,
        "desc": "IPv4, net.mptcp.checksum_enabled=1 on both ends",
    },
    "v4_addaddr": {
        "family": 4,
        "client": "198.18.201.1",
        "server": "198.18.201.2",
        "checksum": False,
        # A second server address, announced with ADD_ADDR by the in-kernel path manager.
        "signal": "198.18.202.2",
        "desc": "IPv4, server announces 198.18.202.2 (ip mptcp endpoint ... signal); "
        "limits subflows 2 add_addr_accepted 2 on both ends",
    },
}

SERVER_CODE = r"""
import socket, sys
fam = socket.AF_INET6 if sys.argv[1] == "6" else socket.AF_INET
addr, port, data_len, echo_len = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ls = socket.socket(fam, socket.SOCK_STREAM, 262)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
# The wildcard address, so that an MP_JOIN to an announced address finds the listener.
ls.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", port))
ls.listen(1)
print("ready", flush=True)
ls.settimeout(8)
c, _ = ls.accept()
c.settimeout(8)
got = bytearray()
while len(got) < data_len:
    b = c.recv(65536)
    if not b:
        break
    got += b
assert bytes(got) == bytes(i % 251 for i in range(data_len)), "server: bad data"
c.sendall(bytes(i % 251 for i in range(echo_len)))
while c.recv(65536):
    pass
c.close()
ls.close()
print("server done", flush=True)
"""

CLIENT_CODE = r"""
import socket, sys, time
fam = socket.AF_INET6 if sys.argv[1] == "6" else socket.AF_INET
addr, port, data_len, echo_len = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
pause = float(sys.argv[6])
s = socket.socket(fam, socket.SOCK_STREAM, 262)
s.settimeout(8)
s.connect((addr, port))
time.sleep(pause)
s.sendall(bytes(i % 251 for i in range(data_len)))
got = bytearray()
while len(got) < echo_len:
    b = s.recv(65536)
    if not b:
        break
    got += b
assert bytes(got) == bytes(i % 251 for i in range(echo_len)), "client: bad echo"
s.close()
print("client done", flush=True)
"""


def sh(*args, check=True):
    """Run a command (no shell), failing loudly."""
    r = subprocess.run(args, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {r.stderr.strip()}")
    return r


def nsx(ns, *args, check=True):
    return sh("ip", "netns", "exec", ns, *args, check=check)


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    ifr = struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI)
    fcntl.ioctl(fd, TUNSETIFF, ifr)
    return fd


def cleanup(fds):
    """Remove what this script created, by name."""
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
    for ns in (NS_CLIENT, NS_SERVER):
        sh("ip", "netns", "del", ns, check=False)
    for dev in (TUN_CLIENT, TUN_SERVER):
        if os.path.exists(f"/sys/class/net/{dev}"):
            sh("ip", "link", "del", dev, check=False)


def csum16(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def tcp_info(pkt):
    """(is_tcp, checksums_ok) for an IP packet."""
    if not pkt:
        return False, False
    v = pkt[0] >> 4
    if v == 4:
        ihl = (pkt[0] & 0xF) * 4
        if pkt[9] != 6:
            return False, False
        total = struct.unpack("!H", pkt[2:4])[0]
        ip_ok = csum16(pkt[:ihl]) == 0xFFFF
        seg = pkt[ihl:total]
        pseudo = pkt[12:20] + struct.pack("!BBH", 0, 6, len(seg))
        return True, ip_ok and csum16(pseudo + seg) == 0xFFFF
    if v == 6:
        if pkt[6] != 6:
            return False, False
        plen = struct.unpack("!H", pkt[4:6])[0]
        seg = pkt[40 : 40 + plen]
        pseudo = pkt[8:40] + struct.pack("!IxxxB", len(seg), 6)
        return True, csum16(pseudo + seg) == 0xFFFF
    return False, False


def setup(sc):
    fam = sc["family"]
    prefix = "/24" if fam == 4 else "/64"
    fds = []
    fds.append(open_tun(TUN_CLIENT))
    fds.append(open_tun(TUN_SERVER))
    for ns, dev, addr in (
        (NS_CLIENT, TUN_CLIENT, sc["client"]),
        (NS_SERVER, TUN_SERVER, sc["server"]),
    ):
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "set", dev, "netns", ns)
        nsx(ns, "ip", "link", "set", "lo", "up")
        if fam == 4:
            nsx(ns, "ip", "addr", "add", addr + prefix, "dev", dev)
        else:
            nsx(ns, "ip", "addr", "add", addr + prefix, "dev", dev, "nodad")
        nsx(ns, "ip", "link", "set", dev, "up")
        nsx(ns, "sysctl", "-qw", "net.mptcp.enabled=1")
        nsx(ns, "sysctl", "-qw", f"net.mptcp.checksum_enabled={int(sc['checksum'])}")
        if sc["signal"]:
            nsx(ns, "ip", "mptcp", "limits", "set", "subflows", "2", "add_addr_accepted", "2")
        else:
            nsx(ns, "ip", "mptcp", "limits", "set", "subflows", "0", "add_addr_accepted", "0")
    if sc["signal"]:
        nsx(NS_SERVER, "ip", "addr", "add", sc["signal"] + "/24", "dev", TUN_SERVER)
        nsx(NS_SERVER, "ip", "mptcp", "endpoint", "add", sc["signal"], "dev", TUN_SERVER, "signal")
        net = sc["signal"].rsplit(".", 1)[0] + ".0/24"
        nsx(NS_CLIENT, "ip", "route", "add", net, "dev", TUN_CLIENT)
    return fds


def run(name, sc, kernel):
    fds = []
    procs = []
    try:
        cleanup([])
        fds = setup(sc)
        fd_c, fd_s = fds
        for fd in fds:
            os.set_blocking(fd, False)
        fam = str(sc["family"])
        common = [str(PORT), str(DATA_LEN), str(ECHO_LEN)]
        server = subprocess.Popen(
            ["ip", "netns", "exec", NS_SERVER, sys.executable, "-c", SERVER_CODE,
             fam, sc["server"], *common],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        procs.append(server)
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError(f"server did not start: {server.stderr.read()}")
        pause = "1.0" if sc["signal"] else "0.1"
        client = subprocess.Popen(
            ["ip", "netns", "exec", NS_CLIENT, sys.executable, "-c", CLIENT_CODE,
             fam, sc["server"], *common, pause],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        procs.append(client)

        packets = []
        other = 0
        start = time.monotonic()
        last = start
        exited_at = None
        while True:
            now = time.monotonic()
            if now - start > SCENARIO_TIMEOUT:
                break
            if exited_at is None and all(p.poll() is not None for p in procs):
                exited_at = now
            if exited_at is not None and now - max(last, exited_at) > QUIET_AFTER_EXIT:
                break
            readable, _, _ = select.select([fd_c, fd_s], [], [], 0.1)
            for fd in readable:
                while True:
                    try:
                        pkt = os.read(fd, 65536)
                    except BlockingIOError:
                        break
                    is_tcp, ok = tcp_info(pkt)
                    if not is_tcp:
                        other += 1  # router solicitations, MLD: neither relayed nor recorded
                        continue
                    if not ok:
                        raise RuntimeError(f"captured packet with a bad checksum: {pkt.hex()}")
                    direction = "c2s" if fd == fd_c else "s2c"
                    packets.append((direction, pkt))
                    last = time.monotonic()
                    os.write(fd_s if fd == fd_c else fd_c, pkt)
        for p in procs:
            if p.poll() is None:
                p.kill()
            out, err = p.communicate()
            if p.returncode != 0:
                raise RuntimeError(f"{name}: endpoint failed ({p.returncode}): {out} {err}")
        return packets, other
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        cleanup(fds)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data"))
    ap.add_argument("scenarios", nargs="*", default=list(SCENARIOS))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, TUN)")
    kernel = os.uname().release
    os.makedirs(args.out, exist_ok=True)
    for name in args.scenarios:
        sc = SCENARIOS[name]
        packets, other = run(name, sc, kernel)
        if len(packets) > MAX_PACKETS:
            raise RuntimeError(f"{name}: {len(packets)} packets, more than {MAX_PACKETS}")
        path = os.path.join(args.out, f"linux_mptcp_{name}.hex")
        with open(path, "w") as f:
            f.write(f"# Linux kernel MPTCP capture, scenario {name}: {sc['desc']}\n")
            f.write(f"# kernel: {kernel}\n")
            f.write(
                f"# client {sc['client']} -> server {sc['server']}:{PORT}; client sends "
                f"{DATA_LEN} bytes of i % 251, server answers {ECHO_LEN} bytes of i % 251, "
                "client closes, then server\n"
            )
            f.write("# generated by tools/capture_linux_mptcp.py; one IP packet a line: "
                    "c2s|s2c <hex>\n")
            for direction, pkt in packets:
                f.write(f"{direction} {pkt.hex()}\n")
        print(f"{name}: {len(packets)} packets ({other} non-TCP dropped) -> {path}")


if __name__ == "__main__":
    main()
