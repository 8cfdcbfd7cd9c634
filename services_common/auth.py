"""Authenticated roles on the gRPC plane: signed per-role credentials in call metadata (docs/design.md §8).

A **credential** is ``v1.<role>.<name>.<signature>``, where the signature is HMAC-SHA256 over
``v1.<role>.<name>`` with the stack's **authority key**. It names who is calling: the panel (``control``),
the ``transmitter``, the legitimate ``receiver`` or one ``eavesdropper`` under its own link name.

- Every client call carries its service's credential in the metadata key :data:`METADATA_KEY`
  (:func:`with_credential` and :func:`aio_interceptors`, or :func:`call_metadata` for a single call).
- A callee that holds the authority key verifies it (:class:`Verifier`) and checks its rules
  (:meth:`Verifier.require`). Only the emulator, the transmitter, the receiver and the panel hold the key; an
  eavesdropper checks the panel's calls with pins (below), so it cannot mint another role's credential.
- Health and reflection stay open: orchestrators probe them without a credential.

Why signed tokens rather than mutual TLS: a token is one short string per service that the launcher, compose
and a cluster can hand out as a file or a Secret; verification is one HMAC per call; and it works unchanged
through the TCP gateway that separates eavesdroppers from the control network (docs/design.md §8 says more).

Usage (the command line writes credentials for deployments)::

    python -m services_common.auth init DIR --eavesdroppers eve,far-eve
    # DIR/authority.key (0600) and DIR/<name>.credential, one per service

Files: a service reads its credential from ``--credential-file`` / ``$DIFFSEM_CREDENTIAL_FILE`` and, where it
verifies callers, the key from ``--auth-key-file`` / ``$DIFFSEM_AUTH_KEY_FILE``.

**Pins** (``--auth-pins-file`` / ``$DIFFSEM_AUTH_PINS_FILE``): a service that must check its callers but may not hold
the key (an eavesdropper: the key would let it mint the receiver's credential) gets ``control.pins`` instead, the
SHA-256 fingerprint of the control credential with its role and name. A fingerprint verifies a presented credential
but cannot be turned back into one.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

METADATA_KEY = "x-diffsem-credential"
CONTROL, TRANSMITTER, RECEIVER, EAVESDROPPER = "control", "transmitter", "receiver", "eavesdropper"
ROLES = (CONTROL, TRANSMITTER, RECEIVER, EAVESDROPPER)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")  # no '.', the credential's separator
KEY_BYTES = 32
CREDENTIAL_ENV, KEY_ENV, PINS_ENV = "DIFFSEM_CREDENTIAL_FILE", "DIFFSEM_AUTH_KEY_FILE", "DIFFSEM_AUTH_PINS_FILE"
PINS_FILE = "control.pins"


class AuthError(Exception):
    """A credential that is missing, malformed or forged (UNAUTHENTICATED), or a role a rule refuses
    (PERMISSION_DENIED, ``denied=True``)."""

    def __init__(self, message: str, denied: bool = False):
        super().__init__(message)
        self.denied = denied

    @property
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.PERMISSION_DENIED if self.denied else grpc.StatusCode.UNAUTHENTICATED


@dataclass(frozen=True)
class Identity:
    """Who a verified credential names."""

    role: str
    name: str

    def __str__(self) -> str:
        return f"{self.role}:{self.name}"


def _sign(key: bytes, role: str, name: str) -> str:
    return hmac.new(key, f"v1.{role}.{name}".encode(), hashlib.sha256).hexdigest()


def issue(key: bytes, role: str, name: str) -> str:
    """The credential of ``name`` acting as ``role``, signed with the authority ``key`` (32 bytes)."""
    if role not in ROLES:
        raise ValueError(f"role {role!r}: use one of {', '.join(ROLES)}")
    if not NAME_RE.match(name):
        raise ValueError(f"name {name!r}: use 1-64 letters, digits, '_' or '-' (starting with a letter or digit)")
    return f"v1.{role}.{name}.{_sign(key, role, name)}"


def read_key(path: str | Path) -> bytes:
    """The authority key from a file of 64 hex characters."""
    text = Path(path).read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path}: an authority key is {2 * KEY_BYTES} hex characters")  # never echo the content
    return key


def read_credential(path: str | Path) -> str:
    text = Path(path).read_text().strip()
    if not text.startswith("v1.") or text.count(".") != 3:
        raise ValueError(f"{path}: not a DiffSem credential (v1.<role>.<name>.<signature>)")
    return text


def fingerprint(credential: str) -> str:
    """SHA-256 (hex) of a credential: what a pins file holds instead of the credential itself."""
    return hashlib.sha256(credential.encode()).hexdigest()


def read_pins(path: str | Path) -> dict[str, Identity]:
    """A pins file: one ``<sha256 hex> <role> <name>`` line per accepted credential."""
    pins: dict[str, Identity] = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or len(parts[0]) != 64 or parts[1] not in ROLES:
            raise ValueError(f"{path}:{n}: expected '<sha256 hex> <role> <name>'")  # never echo the content
        pins[parts[0]] = Identity(parts[1], parts[2])
    return pins


def credential_from(path: str | None) -> str | None:
    """The credential in ``path``, else in ``$DIFFSEM_CREDENTIAL_FILE``, else None."""
    path = path or os.environ.get(CREDENTIAL_ENV)
    return read_credential(path) if path else None


def key_from(path: str | None) -> bytes | None:
    """The authority key in ``path``, else in ``$DIFFSEM_AUTH_KEY_FILE``, else None."""
    path = path or os.environ.get(KEY_ENV)
    return read_key(path) if path else None


class Verifier:
    """Checks the credential a call carries against the authority key, or against ``pins`` (fingerprint ->
    identity, for services that may not hold the key).

    Neither (``key=None``) turns authentication off: every caller is anonymous and every rule passes. Only the tests
    of single services use that; the launcher and compose always give every service a key or pins.
    """

    def __init__(self, key: bytes | None, pins: dict[str, Identity] | None = None):
        self.key = key
        self.pins = pins

    @property
    def enabled(self) -> bool:
        return self.key is not None or self.pins is not None

    def identify(self, metadata: Iterable[tuple[str, Any]] | None) -> Identity | None:
        """The caller's identity from call metadata; None when authentication is off."""
        if not self.enabled:
            return None
        token = self.token(metadata)
        if token is None:
            raise AuthError(f"no credential: send one in the {METADATA_KEY!r} metadata")
        if self.key is None:
            who = (self.pins or {}).get(fingerprint(token))
            if who is None:
                raise AuthError("credential is not one this service accepts")
            return who
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != "v1" or parts[1] not in ROLES:
            raise AuthError("malformed credential: expected v1.<role>.<name>.<signature>")
        _, role, name, sig = parts
        if not hmac.compare_digest(sig, _sign(self.key, role, name)):
            raise AuthError("credential signature does not verify with this stack's authority key")
        return Identity(role, name)

    @staticmethod
    def token(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
        """The raw credential in call metadata (None without one)."""
        return next((str(v) for k, v in (metadata or ()) if k == METADATA_KEY), None)

    def require(self, context: Any, roles: Sequence[str], name: str | None = None) -> Identity | None:
        """The caller's identity, if its role is in ``roles`` (and its name is ``name`` when given).

        ``context`` is a grpc (or grpc.aio) ServicerContext. Raises :class:`AuthError`; the servicer's error
        wrapper (``services_common.errors``) turns it into UNAUTHENTICATED or PERMISSION_DENIED.
        """
        who = self.identify(context.invocation_metadata())
        if who is None:
            return None
        if who.role not in roles:
            raise AuthError(f"{who} may not call this: it needs the role {' or '.join(roles)}", denied=True)
        if name is not None and who.name != name:
            raise AuthError(f"{who} may act only as {who.name!r}, not as {name!r}", denied=True)
        return who


def verifier_from(key_path: str | None, pins_path: str | None, log: Any = None) -> Verifier:
    """The verifier of a service from its key file or pins file (or their environment variables); logs a WARNING
    on ``log`` when neither is given, because every caller is then accepted."""
    pins_path = pins_path or os.environ.get(PINS_ENV)
    verifier = Verifier(key_from(key_path), read_pins(pins_path) if pins_path else None)
    if not verifier.enabled and log is not None:
        log.warning("AUTHENTICATION IS OFF: no --auth-key-file/$%s or --auth-pins-file/$%s, so every caller may "
                    "use every RPC of this service", KEY_ENV, PINS_ENV)
    return verifier


def call_metadata(credential: str | None) -> tuple[tuple[str, str], ...]:
    """Metadata for one call (empty without a credential)."""
    return ((METADATA_KEY, credential),) if credential else ()


class _Attach(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
              grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    def __init__(self, credential: str):
        self.metadata = call_metadata(credential)

    def _details(self, d: Any) -> Any:
        return d._replace(metadata=tuple(d.metadata or ()) + self.metadata)

    def intercept_unary_unary(self, cont: Callable, d: Any, request: Any) -> Any:
        return cont(self._details(d), request)

    def intercept_unary_stream(self, cont: Callable, d: Any, request: Any) -> Any:
        return cont(self._details(d), request)

    def intercept_stream_unary(self, cont: Callable, d: Any, requests: Any) -> Any:
        return cont(self._details(d), requests)

    def intercept_stream_stream(self, cont: Callable, d: Any, requests: Any) -> Any:
        return cont(self._details(d), requests)


def with_credential(ch: grpc.Channel, credential: str | None) -> grpc.Channel:
    """``ch`` with ``credential`` attached to every call (unchanged without one)."""
    return grpc.intercept_channel(ch, _Attach(credential)) if credential else ch


class _AioAttach:
    """Adds the credential to a grpc.aio call. grpc.aio files an interceptor under the first interface it matches,
    so :func:`aio_interceptors` makes one subclass instance per call type."""

    def __init__(self, credential: str):
        self.metadata = call_metadata(credential)

    def _details(self, d: Any) -> Any:
        md = grpc.aio.Metadata(*(d.metadata or ()), *self.metadata)
        return d._replace(metadata=md)

    async def intercept_unary_unary(self, cont: Callable, d: Any, request: Any) -> Any:
        return await cont(self._details(d), request)

    async def intercept_unary_stream(self, cont: Callable, d: Any, request: Any) -> Any:
        return await cont(self._details(d), request)

    async def intercept_stream_unary(self, cont: Callable, d: Any, requests: Any) -> Any:
        return await cont(self._details(d), requests)

    async def intercept_stream_stream(self, cont: Callable, d: Any, requests: Any) -> Any:
        return await cont(self._details(d), requests)


_AIO_KINDS = tuple(type(f"_AioAttach{base.__name__}", (_AioAttach, base), {})
                   for base in (grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor,
                                grpc.aio.StreamUnaryClientInterceptor, grpc.aio.StreamStreamClientInterceptor))


def aio_interceptors(credential: str | None) -> list[Any]:
    """Interceptors for ``grpc.aio.insecure_channel(..., interceptors=...)``: every call type carries ``credential``."""
    return [kind(credential) for kind in _AIO_KINDS] if credential else []


def init_dir(directory: Path, eavesdroppers: Sequence[str], key: bytes | None = None) -> bytes:
    """Write ``authority.key``, one ``<name>.credential`` per service and ``control.pins`` into ``directory``
    (files 0600).

    Names: ``control``, ``transmitter``, ``receiver`` and each eavesdropper's link name. An existing key is
    reused, so adding an eavesdropper later keeps every issued credential valid.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key_file = directory / "authority.key"
    if key is None:
        key = read_key(key_file) if key_file.exists() else secrets.token_bytes(KEY_BYTES)
    _write_private(key_file, key.hex())
    for role in (CONTROL, TRANSMITTER, RECEIVER):
        _write_private(directory / f"{role}.credential", issue(key, role, role))
    for name in eavesdroppers:
        _write_private(directory / f"{name}.credential", issue(key, EAVESDROPPER, name))
    _write_private(directory / PINS_FILE, f"{fingerprint(issue(key, CONTROL, CONTROL))} {CONTROL} {CONTROL}")
    return key


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m services_common.auth", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("init", help="write an authority key and the services' credentials into DIR")
    i.add_argument("dir", type=Path)
    i.add_argument("--eavesdroppers", default="", help="comma-separated eavesdropper link names")
    s = sub.add_parser("issue", help="print one credential")
    s.add_argument("--key-file", required=True)
    s.add_argument("--role", required=True, choices=ROLES)
    s.add_argument("--name", required=True)
    args = p.parse_args(argv)
    try:
        if args.cmd == "init":
            names = [n for n in args.eavesdroppers.split(",") if n]
            init_dir(args.dir, names)
            print(f"wrote {args.dir}/authority.key and credentials for control, transmitter, receiver"
                  + "".join(f", {n}" for n in names))
        else:
            print(issue(read_key(args.key_file), args.role, args.name))
    except (ValueError, OSError) as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
