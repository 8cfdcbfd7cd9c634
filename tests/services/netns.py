"""Hosts for tests: Linux network namespaces on one private LAN, made and removed by the test.

Each host is a namespace with one veth interface and its own address; the other ends of the veths hang on a bridge
that lives in a switch namespace of its own, so the machine's own namespace (its interfaces, routes and addresses)
is never touched. :meth:`Lan.cut` sets a host's switch port down (a pulled cable), :meth:`Lan.restore` up again.
Needs root and ``ip`` (iproute2); :func:`unavailable` says why not, for a skip.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
SUBNET = "10.77.0"  # inside the test's namespaces only


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip()}")


def unavailable() -> str | None:
    """Why this machine cannot make the test's hosts (None: it can)."""
    if shutil.which("ip") is None:
        return "needs iproute2's `ip`"
    if os.geteuid() != 0:
        return "needs root to create network namespaces and veth pairs (run the suite as root)"
    probe = f"dsprobe{uuid.uuid4().hex[:6]}"
    try:
        _ip("netns", "add", probe)
        _ip("link", "add", "p0", "type", "veth", "peer", "name", "p1", ns=probe)
    except RuntimeError as exc:
        return f"cannot create network namespaces with veth pairs here: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30)
    return None


class Lan:
    """Hosts named by the caller, each in namespace ``<tag>-<name>`` at ``10.77.0.<n>``, on one bridge."""

    def __init__(self) -> None:
        self.tag = f"ds{uuid.uuid4().hex[:6]}"
        self.switch = f"{self.tag}-sw"
        self.hosts: dict[str, str] = {}
        self._port: dict[str, str] = {}
        _ip("netns", "add", self.switch)
        _ip("link", "add", "br0", "type", "bridge", ns=self.switch)
        _ip("link", "set", "br0", "up", ns=self.switch)

    def ns(self, host: str) -> str:
        return f"{self.tag}-{host}"

    def add(self, host: str) -> str:
        """A new host; returns its address."""
        n = len(self.hosts) + 2
        ns, port = self.ns(host), f"p{n}"
        _ip("netns", "add", ns)
        _ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", self.switch)
        _ip("link", "set", port, "master", "br0", "up", ns=self.switch)
        _ip("addr", "add", f"{SUBNET}.{n}/24", "dev", "eth0", ns=ns)
        _ip("link", "set", "eth0", "up", ns=ns)
        _ip("link", "set", "lo", "up", ns=ns)
        self.hosts[host], self._port[host] = f"{SUBNET}.{n}", port
        return self.hosts[host]

    def prefix(self, host: str) -> tuple[str, ...]:
        """A command prefix that runs a process on ``host``."""
        return ("ip", "netns", "exec", self.ns(host))

    def cut(self, host: str) -> None:
        _ip("link", "set", self._port[host], "down", ns=self.switch)

    def restore(self, host: str) -> None:
        _ip("link", "set", self._port[host], "up", ns=self.switch)

    def close(self) -> None:
        for ns in [*(self.ns(h) for h in self.hosts), self.switch]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


class On:
    """Calls run on one host: a single worker thread that entered the host's network namespace (a thread's
    namespace is its own), so sockets opened in :meth:`__call__` are that host's."""

    def __init__(self, lan: Lan, host: str):
        path = f"/var/run/netns/{lan.ns(host)}"

        def enter() -> None:
            fd = os.open(path, os.O_RDONLY)
            try:
                if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {path}")
            finally:
                os.close(fd)

        self._pool = ThreadPoolExecutor(max_workers=1, initializer=enter, thread_name_prefix=f"on-{host}")

    def __call__(self, fn: Callable[..., T], *args: object, **kw: object) -> T:
        return self._pool.submit(fn, *args, **kw).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
