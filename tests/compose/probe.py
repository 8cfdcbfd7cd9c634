"""What an eavesdropper's code can do from inside its container: run there by the compose test as ``python -c``.

The image holds no test code, so ``tests/compose/test_compose_e2e.py`` passes this file's text to ``python -c``
in the container with the options below, one exec for many checks (an exec costs seconds); it prints one JSON
object with a key per option given. Standard library only.

    --reach HOST:PORT ...     whether a TCP connection opens to each target (a name that does not resolve: False)
    --abstract NAME ...       whether a connection opens to each abstract Unix socket NAME
    --sockets                 the network interfaces, the IPv4 routes, /tap's entries, and whether /tap can be changed
    --list DIR ...            each folder's entries
    --read FILE ...           each file's text
    --privileges              uid, capabilities, no_new_privs, seccomp, setuid files, writable paths, raw sockets, a
                              new user namespace, the cgroup's limits
    --exhaust                 how many threads start before the process limit refuses one
    --listen NAME SECONDS     (alone) hold the abstract Unix socket NAME open for SECONDS, accepting
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time

CLONE_NEWUSER = 0x10000000


def _errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc))


def reach(targets: list[str]) -> dict[str, bool]:
    out = {}
    for target in targets:
        host, port = target.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=3).close()
            out[target] = True
        except OSError:
            out[target] = False
    return out


def abstract_listen(name: str, seconds: float) -> bool:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind("\0" + name)
    srv.listen(16)
    srv.settimeout(0.5)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            srv.accept()[0].close()
        except TimeoutError:
            pass
    return True


def abstract_connect(names: list[str]) -> dict[str, bool]:
    out = {}
    for name in names:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect("\0" + name)
                out[name] = True
            except OSError:
                out[name] = False
    return out


def _try(action) -> str:
    """``ok``, or the errno name that refused ``action``."""
    try:
        action()
        return "ok"
    except OSError as exc:
        return _errno_name(exc)


def sockets() -> dict:
    with open("/proc/net/route") as f:
        routes = f.read().splitlines()[1:]
    spoof = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    return {"interfaces": sorted(name for _, name in socket.if_nameindex()), "routes": len(routes),
            "tap": sorted(os.listdir("/tap")),
            "tap_sockets": sorted(n for n in os.listdir("/tap") if stat.S_ISSOCK(os.stat(f"/tap/{n}").st_mode)),
            "bind_in_tap": _try(lambda: spoof.bind("/tap/spoof.sock")),
            "unlink_in_tap": _try(lambda: os.unlink("/tap/emulator.sock")),
            "rename_in_tap": _try(lambda: os.rename("/tap/telemetry.sock", "/tap/t.sock"))}


def _status() -> dict[str, str]:
    with open("/proc/self/status") as f:
        return dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)


def _setuid_files() -> list[str]:
    found = []
    root_dev = os.stat("/").st_dev
    for top, dirs, files in os.walk("/"):
        dirs[:] = [d for d in dirs if os.lstat(os.path.join(top, d)).st_dev == root_dev
                   and os.path.join(top, d) not in ("/proc", "/sys", "/dev")]
        for name in files:
            path = os.path.join(top, name)
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
                found.append(path)
    return found


def _first(*paths: str) -> str | None:
    for path in paths:
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            continue
    return None


def _write(path: str) -> str:
    def action() -> None:
        with open(path, "w") as f:
            f.write("x")
        os.unlink(path)
    return _try(action)


def _exec_from_tmp() -> str:
    path = "/tmp/probe-exec.sh"
    with open(path, "w") as f:
        f.write("#!/bin/sh\nexit 0\n")
    os.chmod(path, 0o755)
    try:
        return _try(lambda: subprocess.run([path], check=True, timeout=10))
    finally:
        os.unlink(path)


def _raw(family: int, kind: int, proto: int) -> str:
    return _try(lambda: socket.socket(family, kind, proto).close())


def _unshare_user() -> str:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUSER) == 0:
        return "ok"
    return errno.errorcode.get(ctypes.get_errno(), "?")


def _threads_until_refused(cap: int = 100_000) -> int:
    """Start threads that wait until they are told to end, until one is refused (the pids limit), then end them."""
    done = threading.Event()
    started = []
    try:
        while len(started) < cap:
            t = threading.Thread(target=done.wait, daemon=True)
            t.start()
            started.append(t)
    except RuntimeError:  # "can't start new thread": clone(2) refused
        pass
    finally:
        done.set()
        for t in started:
            t.join()
    return len(started)


def privileges() -> dict:
    status = _status()
    out = {"uid": os.getuid(), "euid": os.geteuid(), "groups": os.getgroups(),
           **{k: status[k].strip() for k in ("NoNewPrivs", "Seccomp", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")},
           "setuid_files": _setuid_files(),
           "write_opt": _write("/opt/diffsem/probe"), "write_home": _write(os.path.expanduser("~/probe")),
           "write_etc": _write("/etc/probe"), "write_tmp": _write("/tmp/probe"), "exec_tmp": _exec_from_tmp(),
           "raw_inet": _raw(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
           "raw_packet": _raw(socket.AF_PACKET, socket.SOCK_RAW, 0),
           "unshare_user": _unshare_user(),
           "memory_max": _first("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"),
           "pids_max": _first("/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max"),
           "cpu_quota": _first("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us",
                               "/sys/fs/cgroup/cpu.max")}
    return out


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="probe")
    p.add_argument("--reach", nargs="+", default=None)
    p.add_argument("--abstract", nargs="+", default=None)
    p.add_argument("--sockets", action="store_true")
    p.add_argument("--list", nargs="+", default=None)
    p.add_argument("--read", nargs="+", default=None)
    p.add_argument("--privileges", action="store_true")
    p.add_argument("--exhaust", action="store_true")
    p.add_argument("--listen", nargs=2, default=None)
    args = p.parse_args(argv)
    if args.listen:
        print(json.dumps({"listen": abstract_listen(args.listen[0], float(args.listen[1]))}))
        return
    result: dict = {}
    if args.reach:
        result["reach"] = reach(args.reach)
    if args.abstract:
        result["abstract"] = abstract_connect(args.abstract)
    if args.sockets:
        result["sockets"] = sockets()
    if args.list:
        result["list"] = {d: sorted(os.listdir(d)) for d in args.list}
    if args.read:
        result["read"] = {f: open(f).read() for f in args.read}
    if args.privileges:
        result["privileges"] = privileges()
    if args.exhaust:  # last: while it runs, the container can start no process
        result["threads_started"] = _threads_until_refused()
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
