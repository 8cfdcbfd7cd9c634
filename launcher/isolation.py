"""What each child of the launcher may see (docs/design.md §8): its own environment and, for an eavesdropper under a
root launcher, its own user and its own files.

- **Environment.** A child gets the few variables a Python process needs (:data:`PASSED`), then its own settings from
  the launcher (:func:`child_env`): never the launcher's other ``$DIFFSEM_*`` variables, the panel's bearer token
  (the panel alone), the self-noise key (the transmitter and the receiver alone).
- **Users.** Where the launcher runs as root, each eavesdropper runs under a uid and gid of its own (an id in
  :data:`EVE_IDS` that no account, group or running process uses), without supplementary groups or capabilities,
  with ``no_new_privs`` (``setpriv``) and umask 077, as every child has. Its credential and pins sit in a home of its
  own (:class:`EveHome`, 0700, its files 0400, owned by its uid), so it cannot read the authority key or another
  principal's credential (the launcher's credentials folder is 0700 root), another process's environment
  (``/proc/<pid>/environ`` is its owner's), the panel's database or the service logs (0600 root). Where what it must
  run lies under a folder other users cannot cross (a Python installed in ``/root``), :class:`Confinement` starts it
  in a mount namespace of its own in which that folder is an empty tmpfs holding only what it needs. Without root
  there is one user, and eavesdroppers are trusted code (:data:`NOT_ROOT`).

What uids do not separate: the network (an eavesdropper reaches every loopback port, the panel's read-only HTTP API
included) and world-readable files (the repository, with its committed checkpoints). Only compose confines an
eavesdropper to its own files and its two gateway ports.
"""

from __future__ import annotations

import grp
import os
import pwd
import random
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSED = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TERM", "VIRTUAL_ENV", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS",
          "MKL_NUM_THREADS", "DIFFSEM_LOG_FORMAT", "DIFFSEM_LOG_LEVEL")
EVE_IDS = range(60100, 65000)  # inside a 16-bit id map, clear of the usual system and user ranges
NOT_ROOT = ("[launcher] not running as root: every service runs as this user, so eavesdroppers are trusted code here "
            "(they can read the authority key, every credential and every service's environment)")


def child_env(own: dict[str, str] | None = None, home: Path | None = None) -> dict[str, str]:
    """A child's whole environment: :data:`PASSED` from the launcher's, ``HOME`` (``home``, else the launcher's), the
    project on ``PYTHONPATH``, unbuffered output, an ephemeral metrics port, then ``own`` (its own settings)."""
    env = {k: os.environ[k] for k in PASSED if k in os.environ}
    env["HOME"] = str(home) if home is not None else os.environ.get("HOME", "/")
    if home is not None:
        env["TMPDIR"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    env["DIFFSEM_METRICS_PORT"] = "0"  # each gRPC service's Prometheus endpoint, ephemeral
    return env | (own or {})


def isolating() -> bool:
    """Whether eavesdroppers get users of their own (the launcher runs as root)."""
    return os.geteuid() == 0


def confinement(*more: Path) -> tuple[Confinement | None, str]:
    """The confinement of eavesdroppers that read :func:`needed_paths` and ``more``, or None and the one line that
    says why they are trusted code here (not root; no ``setpriv``; a folder they would need unreadable, ...)."""
    if not isolating():
        return None, NOT_ROOT
    try:
        conf = Confinement(needed_paths(*more))
        tools = ["setpriv", *(["unshare"] if conf.binds else [])]
        missing = [t for t in tools if shutil.which(t) is None]
        if missing:
            raise PermissionError(f"{' and '.join(missing)} (util-linux) not found")
    except PermissionError as exc:
        return None, f"[launcher] eavesdroppers run as root and are trusted code here: {exc}"
    return conf, ""


@dataclass(frozen=True)
class User:
    """A uid and the gid of the same number, for one eavesdropper."""

    uid: int

    @property
    def gid(self) -> int:
        return self.uid


def _ids_in_use() -> set[int]:
    """Every uid and gid that an account, a group or a running process has."""
    used = {p.pw_uid for p in pwd.getpwall()} | {p.pw_gid for p in pwd.getpwall()} | {g.gr_gid for g in grp.getgrall()}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            for line in status.read_text().splitlines():
                if line.startswith(("Uid:", "Gid:")):
                    used.update(int(v) for v in line.split()[1:])
        except (OSError, ValueError):
            continue  # the process ended meanwhile
    return used


def free_user(taken: set[int]) -> User:
    """A user for a new eavesdropper: an id of :data:`EVE_IDS` that nothing uses and ``taken`` does not hold (random,
    so stacks side by side do not collide)."""
    free = sorted(set(EVE_IDS) - _ids_in_use() - taken)
    if not free:
        raise RuntimeError(f"no free uid in {EVE_IDS.start}-{EVE_IDS.stop - 1} for another eavesdropper")
    return User(random.SystemRandom().choice(free))


class EveHome:
    """An eavesdropper's own folder under ``root``: its HOME, its port file, its credential and its pins, readable
    by its ``user`` alone (the launcher's user without one)."""

    def __init__(self, root: Path, name: str, user: User | None):
        self.path, self.user = root / name, user
        self.path.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.path, 0o700)
        if user is not None:
            os.chown(self.path, user.uid, user.gid)

    def install(self, source: Path) -> Path:
        """A copy of ``source`` in this home, 0400, owned by the eavesdropper's user; its path."""
        dest = self.path / source.name
        dest.unlink(missing_ok=True)
        shutil.copyfile(source, dest)
        os.chmod(dest, 0o400)
        if self.user is not None:
            os.chown(dest, self.user.uid, self.user.gid)
        return dest


class Confinement:
    """How a root launcher starts an eavesdropper under its own user.

    ``needed``: the folders it must read (the Python installation, the virtual environment, the project, the
    checkpoints). Those whose ancestors other users can cross need nothing. For a folder under one they cannot
    cross (``blocked``), the child gets a mount namespace of its own (``unshare``) in which the blocked folder is an
    empty tmpfs (0711) with only the needed folders bound back in: the rest of it (root's home, say) stays out of
    sight. Then ``setpriv`` drops to the user: no groups, no capabilities, no new privileges.
    """

    def __init__(self, needed: list[Path]):
        self.binds: dict[Path, list[Path]] = {}
        for path in needed:
            blocked = next((a for a in reversed(path.parents) if not _crossable(a)), None)
            if not _crossable(path):
                raise PermissionError(f"{path} is not readable by other users; eavesdroppers cannot run from it")
            if blocked is not None:
                self.binds.setdefault(blocked, []).append(path)

    def command(self, user: User, argv: list[str], stage: Path) -> list[str]:
        """``argv`` run as ``user``; ``stage``: a root-only folder for the namespace's mount points."""
        drop = ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", "--no-new-privs",
                "--inh-caps=-all", "--bounding-set=-all", "--"]
        if not self.binds:
            return [*drop, *argv]
        q, steps, n = shlex.quote, [], 0
        for blocked, paths in self.binds.items():
            slots = [f"{q(str(stage))}/{n + i}" for i in range(len(paths))]
            n += len(paths)
            steps += [f"mkdir -p {slot} && mount --rbind {q(str(p))} {slot}" for slot, p in zip(slots, paths, strict=True)]
            steps.append(f"mount -t tmpfs -o mode=0711 diffsem {q(str(blocked))}")
            steps += [f"mkdir -p {q(str(p))} && mount --rbind {slot} {q(str(p))}"
                      for slot, p in zip(slots, paths, strict=True)]
        script = " && ".join([f"mkdir -p -m 700 {q(str(stage))}", *steps, f'exec {shlex.join(drop)} "$@"'])
        return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh", *argv]


def _crossable(path: Path) -> bool:
    """Whether users other than its owner and group may traverse (and so reach into) ``path``."""
    try:
        return bool(path.stat().st_mode & 0o001)
    except OSError:
        return False


def needed_paths(*more: Path) -> list[Path]:
    """What an eavesdropper must read: the Python installation, the virtual environment, the project and ``more``."""
    paths = [Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), ROOT, *(p.resolve() for p in more)]
    return list(dict.fromkeys(paths))


def private_root(path: Path) -> Path:
    """``path`` as a folder others may cross but not list (0711), so each eavesdropper reaches its own home in it."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o711)
    return path
