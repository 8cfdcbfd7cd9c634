"""Credentials on Kubernetes: what ``python -m services_common.auth init`` writes, one Secret per role
(docs/design.md §8; deploy/k8s/). It runs as the credential Jobs, inside the cluster, with no dependency beyond the
standard library: it talks to the Kubernetes API with the Job's service account token.

    python -m services_common.k8s_credentials core                          # base/credentials.yaml
    python -m services_common.k8s_credentials eavesdroppers eve-feature --replicas 8   # one per attack
    python -m services_common.k8s_credentials self-noise-key                # components/keyed

- ``core``: the authority key (Secret ``diffsem-authority``; an existing one is kept, so credentials issued earlier
  stay valid) and a Secret per core service, holding exactly the files :data:`ROLE_FILES` names for it.
- ``eavesdroppers GROUP``: credentials for the replica names ``GROUP-0`` ... ``GROUP-(N-1)`` (a StatefulSet's pod
  names) and ``control.pins``, never the key, in ``diffsem-cred-GROUP``. It needs the authority key's Secret (the
  ``core`` Job makes it) and fails, to be retried by the Job, until it exists.
- ``self-noise-key``: 32 random bytes from the operating system in ``diffsem-self-noise-key`` (kept if present).

What each role holds is this module's :data:`ROLE_FILES` table, over the files ``auth.init_dir`` writes: a change
of the credential format changes ``auth`` and, at most, this table.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import ssl
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from services_common import auth

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
AUTHORITY = "diffsem-authority"
SELF_NOISE_KEY = "diffsem-self-noise-key"
# Secret name -> {file name in the pod's /credentials: file that auth.init_dir wrote}; compose's volumes hold the
# same (scripts/compose-credentials).
ROLE_FILES: dict[str, dict[str, str]] = {
    "diffsem-cred-channel-emulator": {"authority.key": "authority.key"},  # it verifies; it calls no one
    "diffsem-cred-transmitter": {"credential": f"{auth.TRANSMITTER}.credential", "authority.key": "authority.key"},
    "diffsem-cred-receiver": {"credential": f"{auth.RECEIVER}.credential", "authority.key": "authority.key"},
    "diffsem-cred-control-panel": {"credential": f"{auth.CONTROL}.credential", "authority.key": "authority.key"},
}


def eavesdropper_files(group: str, replicas: int) -> dict[str, str]:
    """An eavesdropper group's Secret: each replica's credential under its own name, and ``control.pins``."""
    return {f"{group}-{i}.credential": f"{group}-{i}.credential" for i in range(replicas)} | {auth.PINS_FILE: auth.PINS_FILE}


class Api:
    """The Kubernetes API's Secrets in one namespace: ``base`` (https://host:port), a bearer token and a CA file."""

    def __init__(self, base: str, token: str, namespace: str, ca_file: str | None = None):
        self.base, self.token, self.namespace = base.rstrip("/"), token, namespace
        self.context = ssl.create_default_context(cafile=ca_file) if base.startswith("https") else None

    @classmethod
    def in_cluster(cls) -> Api:
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise SystemExit("error: not inside a Kubernetes pod ($KUBERNETES_SERVICE_HOST is not set)")
        host = f"[{host}]" if ":" in host else host
        return cls(f"https://{host}:{port}", (SA_DIR / "token").read_text().strip(),
                   (SA_DIR / "namespace").read_text().strip(), str(SA_DIR / "ca.crt"))

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any] | None:
        req = urllib.request.Request(f"{self.base}/api/v1/namespaces/{self.namespace}/secrets{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30, context=self.context) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and method == "GET":
                return None
            raise SystemExit(f"error: {method} secret{path}: HTTP {exc.code} {exc.reason}") from None

    def get(self, name: str) -> dict[str, bytes] | None:
        """A Secret's data, decoded; None if it does not exist."""
        obj = self._call("GET", f"/{name}")
        return None if obj is None else {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}

    def put(self, name: str, data: dict[str, bytes], role: str) -> None:
        """Create or replace the Secret ``name`` with ``data``."""
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "diffsem", "diffsem.dev/holder": role}},
                "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}
        if self.get(name) is None:
            self._call("POST", "", body)
        else:
            self._call("PUT", f"/{name}", body)


def _init(api: Api, folder: Path, eavesdroppers: list[str], create: bool) -> None:
    """``auth.init_dir`` into ``folder`` with the authority key held in its Secret (a new one only if ``create``)."""
    held = api.get(AUTHORITY)
    if held is None and not create:
        raise SystemExit(f"error: Secret {AUTHORITY} does not exist yet (the diffsem-credentials Job makes it); "
                         "this Job retries")
    if held is not None:
        (folder / "authority.key").write_bytes(held["authority.key"])  # init_dir keeps an existing key
    auth.init_dir(folder, eavesdroppers)


def _secret(folder: Path, files: dict[str, str]) -> dict[str, bytes]:
    return {name: (folder / source).read_bytes() for name, source in files.items()}


def core(api: Api) -> list[str]:
    """The authority key and the core services' Secrets; returns the Secrets written."""
    with tempfile.TemporaryDirectory() as tmp:
        _init(api, Path(tmp), [], create=True)
        api.put(AUTHORITY, {"authority.key": (Path(tmp) / "authority.key").read_bytes()}, "credential-jobs")
        for name, files in ROLE_FILES.items():
            api.put(name, _secret(Path(tmp), files), name.removeprefix("diffsem-cred-"))
    return [AUTHORITY, *ROLE_FILES]


def eavesdroppers(api: Api, group: str, replicas: int) -> list[str]:
    """``diffsem-cred-<group>``: credentials of ``group``-0 ... ``group``-(replicas-1) and control.pins, no key."""
    if not auth.NAME_RE.match(f"{group}-{replicas - 1}") or replicas < 1:
        raise SystemExit(f"error: eavesdropper group {group!r} x {replicas}: names must match {auth.NAME_RE.pattern}")
    with tempfile.TemporaryDirectory() as tmp:
        _init(api, Path(tmp), [f"{group}-{i}" for i in range(replicas)], create=False)
        api.put(f"diffsem-cred-{group}", _secret(Path(tmp), eavesdropper_files(group, replicas)), group)
    return [f"diffsem-cred-{group}"]


def self_noise_key(api: Api) -> list[str]:
    """The keyed self-noise secret (hex), drawn once from the OS and kept."""
    if api.get(SELF_NOISE_KEY) is None:
        api.put(SELF_NOISE_KEY, {"key": secrets.token_hex(32).encode() + b"\n"}, "transmitter-receiver")
    return [SELF_NOISE_KEY]


def main(argv: list[str] | None = None, api: Api | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m services_common.k8s_credentials", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("core", help="the authority key and the core services' Secrets")
    e = sub.add_parser("eavesdroppers", help="one eavesdropper group's Secret")
    e.add_argument("group")
    e.add_argument("--replicas", type=int, default=8, help="credentials for GROUP-0 .. GROUP-(N-1)")
    sub.add_parser("self-noise-key", help="the keyed self-noise Secret")
    args = p.parse_args(argv)
    api = api or Api.in_cluster()
    written = {"core": lambda: core(api), "self-noise-key": lambda: self_noise_key(api),
               "eavesdroppers": lambda: eavesdroppers(api, args.group, args.replicas)}[args.cmd]()
    print("wrote Secrets " + ", ".join(written), file=sys.stderr)


if __name__ == "__main__":
    main()
