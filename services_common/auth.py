"""Authenticated roles on the gRPC plane: principal credentials and short-lived, audience-bound tokens
(docs/design.md §8).

Scoped key derivation, as in AWS Signature Version 4. The stack has one **authority key** K (32 random bytes),
held by whoever issues credentials (the launcher, compose's init service) and by the services that verify callers
of every role (the channel emulator, the transmitter, the receiver, the panel's telemetry).

- A **principal** is a role (``control``: the panel; ``transmitter``; ``receiver``; ``eavesdropper``) and a name.
  Its **credential** is ``v2.<role>.<name>.<S>``, where S = HMAC-SHA256(K, ``v2|<role>|<name>``) (hex) is its
  secret. A credential is a file readable by its owner only, and it never travels.
- Every call carries a **token** in the metadata key :data:`METADATA_KEY`, minted by the caller for the service it
  calls (its **audience**) and valid for :data:`TOKEN_TTL_S`::

      v2.<role>.<name>.<audience>.<expiry, Unix seconds>.<HMAC-SHA256(HMAC-SHA256(S, audience), expiry)>

  The client interceptors (:func:`with_credential`, :func:`aio_interceptors`) mint a fresh one per call, naming the
  service from the method's path (:data:`SERVICE_AUDIENCES`; an eavesdropper's audience, ``eavesdropper:<name>``,
  is given with the channel), so renewal is the caller's and needs no round trip.
- A **verifier with K** recomputes S from the token's role and name, checks that the audience is its own, that the
  token has not expired (:data:`SKEW_S` of clock skew allowed) and lives no longer than :data:`MAX_TTL_S`, then the
  signature. A token captured at one service is therefore useless at another, and useless anywhere after expiry.
- A **verifier without K** (an eavesdropper, which checks the panel's calls to its ``Attack`` and ``Info``) gets in
  its pins file only the audience key A = HMAC(S_control, its own audience): A verifies the panel's tokens to it,
  and mints tokens to nobody else; K, S_control and every other principal's secret stay out of its reach.

Health and reflection stay open: orchestrators probe them without a token. Which role may call which method is
checked at each service's door (``services_common.door``); a rule that depends on the request (``Listen`` as which
name, ``Report`` under which name) is checked by the handler with :meth:`Verifier.require`.

Usage (the command line writes credentials for deployments)::

    python -m services_common.auth init DIR --eavesdroppers eve,far-eve
    # DIR/authority.key, DIR/<principal>.credential and DIR/<eavesdropper>.pins, each 0600
    python -m services_common.auth pins --key-file DIR/authority.key --audience eavesdropper:eve

Files: a service reads its credential from ``--credential-file`` / ``$DIFFSEM_CREDENTIAL_FILE`` and, where it
verifies callers, the key from ``--auth-key-file`` / ``$DIFFSEM_AUTH_KEY_FILE`` or its pins from
``--auth-pins-file`` / ``$DIFFSEM_AUTH_PINS_FILE``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

METADATA_KEY = "x-diffsem-credential"
VERSION = "v2"
CONTROL, TRANSMITTER, RECEIVER, EAVESDROPPER = "control", "transmitter", "receiver", "eavesdropper"
ROLES = (CONTROL, TRANSMITTER, RECEIVER, EAVESDROPPER)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")  # no '.', the token's separator
AUDIENCE_RE = re.compile(r"^[a-z_]{1,32}(:[A-Za-z0-9][A-Za-z0-9_\-]{0,63})?$")
KEY_BYTES = 32
TOKEN_TTL_S = 300  # a token minted now expires this much later; callers mint one per call
MAX_TTL_S = 900  # a verifier refuses a token whose expiry lies further ahead (a long-lived token is a standing risk)
SKEW_S = 30  # clock skew between hosts a verifier tolerates
MAX_TOKEN_CHARS = 512
CREDENTIAL_ENV, KEY_ENV, PINS_ENV = "DIFFSEM_CREDENTIAL_FILE", "DIFFSEM_AUTH_KEY_FILE", "DIFFSEM_AUTH_PINS_FILE"

# The audience of each service, by its gRPC service name; an eavesdropper's is eavesdropper_audience(its name).
EMULATOR_AUDIENCE, TRANSMITTER_AUDIENCE, RECEIVER_AUDIENCE, TELEMETRY_AUDIENCE = (
    "channel_emulator", "transmitter", "receiver", "telemetry")
SERVICE_AUDIENCES = {"diffsem.v1.ChannelEmulator": EMULATOR_AUDIENCE, "diffsem.v1.Transmitter": TRANSMITTER_AUDIENCE,
                     "diffsem.v1.Receiver": RECEIVER_AUDIENCE, "diffsem.v1.Telemetry": TELEMETRY_AUDIENCE}
EAVESDROPPER_SERVICE = "diffsem.v1.Eavesdropper"


def eavesdropper_audience(name: str) -> str:
    """The audience of eavesdropper ``name``'s own gRPC service (the panel's calls to its Attack and Info)."""
    return f"{EAVESDROPPER}:{name}"


def service_audience(spec_name: str, name: str | None = None) -> str:
    """The audience a service verifies, from its settings spec's name (``channel_emulator``, ...) and, for an
    eavesdropper, its name."""
    return eavesdropper_audience(name or "") if spec_name == EAVESDROPPER else spec_name


class AuthError(Exception):
    """A token that is missing, malformed, forged, expired or for another audience (UNAUTHENTICATED), or a role a
    rule refuses (PERMISSION_DENIED, ``denied=True``)."""

    def __init__(self, message: str, denied: bool = False):
        super().__init__(message)
        self.denied = denied

    @property
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.PERMISSION_DENIED if self.denied else grpc.StatusCode.UNAUTHENTICATED


@dataclass(frozen=True)
class Identity:
    """Who a verified token names: a principal."""

    role: str
    name: str

    def __str__(self) -> str:
        return f"{self.role}:{self.name}"


def _mac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _secret(key: bytes, role: str, name: str) -> bytes:
    """S = HMAC(K, v2|role|name): a principal's secret."""
    return _mac(key, f"{VERSION}|{role}|{name}")


def _check_principal(role: str, name: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role {role!r}: use one of {', '.join(ROLES)}")
    if not NAME_RE.match(name):
        raise ValueError(f"name {name!r}: use 1-64 letters, digits, '_' or '-' (starting with a letter or digit)")


def issue(key: bytes, role: str, name: str) -> str:
    """The credential of ``name`` acting as ``role`` under the authority ``key`` (32 bytes): its secret, to be kept
    in a file only that principal can read."""
    _check_principal(role, name)
    return f"{VERSION}.{role}.{name}.{_secret(key, role, name).hex()}"


@dataclass(frozen=True)
class Credential:
    """A parsed credential: the principal and its secret S."""

    role: str
    name: str
    secret: bytes

    @classmethod
    def parse(cls, text: str, where: str = "credential") -> Credential:
        parts = text.strip().split(".")
        if len(parts) == 4 and parts[0] == "v1":
            raise ValueError(f"{where}: a v1 credential, which this version no longer accepts; issue the services' "
                             "credentials again (the launcher does at start; compose: its credentials init service)")
        try:
            if len(parts) != 4 or parts[0] != VERSION:
                raise ValueError
            _check_principal(parts[1], parts[2])
            secret = bytes.fromhex(parts[3])
            if len(secret) != 32:
                raise ValueError
        except ValueError:
            raise ValueError(f"{where}: not a DiffSem credential ({VERSION}.<role>.<name>.<64 hex>)") from None
        return cls(parts[1], parts[2], secret)

    @property
    def identity(self) -> Identity:
        return Identity(self.role, self.name)

    def audience_key(self, audience: str) -> bytes:
        """A = HMAC(S, audience): what signs this principal's tokens to ``audience``."""
        return _mac(self.secret, audience)

    def token(self, audience: str, now: float | None = None, ttl_s: float = TOKEN_TTL_S) -> str:
        """A token for ``audience``, valid ``ttl_s`` from ``now`` (default: the wall clock)."""
        if not AUDIENCE_RE.match(audience):
            raise ValueError(f"audience {audience!r}: a service name, or eavesdropper:<name>")
        exp = int((time.time() if now is None else now) + ttl_s)
        sig = _mac(self.audience_key(audience), str(exp)).hex()
        return f"{VERSION}.{self.role}.{self.name}.{audience}.{exp}.{sig}"


def token(credential: str, audience: str, now: float | None = None, ttl_s: float = TOKEN_TTL_S) -> str:
    """A token of the principal of ``credential`` (its text) for ``audience``."""
    return Credential.parse(credential).token(audience, now, ttl_s)


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
    """A credential file's text, checked (never echoed in an error)."""
    text = Path(path).read_text().strip()
    Credential.parse(text, str(path))
    return text


def pins_line(key: bytes, audience: str, role: str = CONTROL, name: str = CONTROL) -> str:
    """One pins-file line, ``<A hex> <role> <name>``: the audience key with which ``audience`` verifies the tokens of
    the principal (role, name) (by default the panel's)."""
    return f"{Credential.parse(issue(key, role, name)).audience_key(audience).hex()} {role} {name}"


def read_pins(path: str | Path) -> dict[Identity, bytes]:
    """A pins file: one ``<audience key hex> <role> <name>`` line per principal whose tokens this service accepts."""
    pins: dict[Identity, bytes] = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if len(parts) != 3 or len(parts[0]) != 64:
                raise ValueError
            _check_principal(parts[1], parts[2])
            pins[Identity(parts[1], parts[2])] = bytes.fromhex(parts[0])
        except ValueError:
            raise ValueError(f"{path}:{n}: expected '<64 hex> <role> <name>'") from None  # never echo the content
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
    """Checks the token a call carries: with the authority ``key``, or with ``pins`` (principal -> audience key, for
    a service that may not hold the key), for this service's ``audience``, on ``clock`` (Unix seconds).

    Neither key nor pins turns authentication off: every caller is anonymous and every rule passes. Only the tests
    of single services use that; the launcher and compose always give every service a key or pins.
    """

    def __init__(self, key: bytes | None, pins: dict[Identity, bytes] | None = None, audience: str | None = None,
                 clock: Callable[[], float] = time.time):
        self.key, self.pins, self.audience, self.clock = key, pins, audience, clock
        if self.enabled and (audience is None or not AUDIENCE_RE.match(audience)):
            raise ValueError(f"a verifier needs its service's audience (got {audience!r})")

    @property
    def enabled(self) -> bool:
        return self.key is not None or self.pins is not None

    def identify(self, metadata: Iterable[tuple[str, Any]] | None) -> Identity | None:
        """The caller's identity from call metadata; None when authentication is off."""
        if not self.enabled:
            return None
        presented = [str(v) for k, v in (metadata or ()) if k == METADATA_KEY]
        if not presented:
            raise AuthError(f"no credential: send a token in the {METADATA_KEY!r} metadata")
        if len(presented) > 1:
            raise AuthError(f"{len(presented)} tokens in one call; send exactly one")
        return self.verify(presented[0])

    def verify(self, tok: str) -> Identity:
        """The principal a token names, if it verifies for this audience now; AuthError saying why not."""
        parts = tok.split(".") if len(tok) <= MAX_TOKEN_CHARS else []
        if len(parts) == 4 and parts[0] in ("v1", VERSION):
            raise AuthError("a credential where a token belongs: send a token minted from it (services_common.auth), "
                            "never the credential itself")
        if len(parts) != 6 or parts[0] != VERSION or parts[1] not in ROLES or not NAME_RE.match(parts[2]) \
                or not parts[4].isdigit():
            raise AuthError(f"malformed token: expected {VERSION}.<role>.<name>.<audience>.<expiry>.<signature>")
        _, role, name, audience, exp_text, sig = parts
        who = Identity(role, name)
        if audience != self.audience:
            raise AuthError(f"a token for {audience!r}, presented at {self.audience!r}: a token is valid only at the "
                            "service it names")
        now, exp = self.clock(), int(exp_text)
        if now > exp + SKEW_S:
            raise AuthError(f"token expired {now - exp:.0f} s ago: tokens live {TOKEN_TTL_S} s; mint a fresh one")
        if exp > now + MAX_TTL_S + SKEW_S:
            raise AuthError(f"token expires {exp - now:.0f} s from now; at most {MAX_TTL_S} s is accepted")
        if self.key is not None:
            audience_key = _mac(_secret(self.key, role, name), audience)
        else:
            audience_key = (self.pins or {}).get(who, b"")
        if not audience_key or not hmac.compare_digest(sig, _mac(audience_key, exp_text).hex()):
            raise AuthError("token signature does not verify: not signed by a credential this stack issued")
        return who

    def require(self, context: Any, roles: Sequence[str], name: str | None = None) -> Identity | None:
        """The caller's identity, if its role is in ``roles`` (and its name is ``name`` when given).

        ``context`` is a grpc (or grpc.aio) ServicerContext. Raises :class:`AuthError`; the servicer's error
        wrapper (``services_common.errors``) turns it into UNAUTHENTICATED or PERMISSION_DENIED.
        """
        who = self.identify(context.invocation_metadata())
        if who is None:
            return None
        check_role(who, roles)
        if name is not None and who.name != name:
            raise AuthError(f"{who} may act only as {who.name!r}, not as {name!r}", denied=True)
        return who


def check_role(who: Identity, roles: Sequence[str]) -> None:
    """PERMISSION_DENIED (an AuthError) unless ``who`` has one of ``roles``."""
    if who.role not in roles:
        raise AuthError(f"{who} may not call this: it needs the role {' or '.join(roles)}", denied=True)


def verifier_from(key_path: str | None, pins_path: str | None, audience: str, log: Any = None) -> Verifier:
    """The verifier of a service for ``audience`` from its key file or pins file (or their environment variables);
    logs a WARNING on ``log`` when neither is given, because every caller is then accepted."""
    pins_path = pins_path or os.environ.get(PINS_ENV)
    verifier = Verifier(key_from(key_path), read_pins(pins_path) if pins_path else None, audience)
    if not verifier.enabled and log is not None:
        log.warning("AUTHENTICATION IS OFF: no --auth-key-file/$%s or --auth-pins-file/$%s, so every caller may "
                    "use every RPC of this service", KEY_ENV, PINS_ENV)
    return verifier


class Minter:
    """The client side: one fresh token per call, for the service the call goes to (``audience``, or the method's
    service by :data:`SERVICE_AUDIENCES`)."""

    def __init__(self, credential: str, audience: str | None = None):
        self.credential = Credential.parse(credential)
        self.audience = audience

    def metadata(self, method: str | bytes) -> tuple[tuple[str, str], ...]:
        """The metadata for a call of ``method`` (``/package.Service/Method``); none for health and reflection."""
        path = method.decode() if isinstance(method, bytes) else method
        service = path.lstrip("/").split("/")[0]
        audience = self.audience or SERVICE_AUDIENCES.get(service)
        if audience is None:
            if service == EAVESDROPPER_SERVICE:
                raise ValueError("a call to an eavesdropper needs its audience: open the channel with "
                                 "audience=auth.eavesdropper_audience(<its name>)")
            return ()  # health, reflection: open, and no token leaves for them
        return ((METADATA_KEY, self.credential.token(audience)),)


class _Attach(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
              grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    def __init__(self, minter: Minter):
        self.minter = minter

    def _details(self, d: Any) -> Any:
        return d._replace(metadata=tuple(d.metadata or ()) + self.minter.metadata(d.method))

    def intercept_unary_unary(self, cont: Callable, d: Any, request: Any) -> Any:
        return cont(self._details(d), request)

    def intercept_unary_stream(self, cont: Callable, d: Any, request: Any) -> Any:
        return cont(self._details(d), request)

    def intercept_stream_unary(self, cont: Callable, d: Any, requests: Any) -> Any:
        return cont(self._details(d), requests)

    def intercept_stream_stream(self, cont: Callable, d: Any, requests: Any) -> Any:
        return cont(self._details(d), requests)


def with_credential(ch: grpc.Channel, credential: str | None, audience: str | None = None) -> grpc.Channel:
    """``ch`` with a fresh token of ``credential`` on every call (unchanged without one)."""
    return grpc.intercept_channel(ch, _Attach(Minter(credential, audience))) if credential else ch


class _AioAttach:
    """Adds a token to a grpc.aio call. grpc.aio files an interceptor under the first interface it matches, so
    :func:`aio_interceptors` makes one subclass instance per call type."""

    def __init__(self, minter: Minter):
        self.minter = minter

    def _details(self, d: Any) -> Any:
        md = grpc.aio.Metadata(*(d.metadata or ()), *self.minter.metadata(d.method))
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


def aio_interceptors(credential: str | None, audience: str | None = None) -> list[Any]:
    """Interceptors for ``grpc.aio.insecure_channel(..., interceptors=...)``: every call carries a fresh token."""
    if not credential:
        return []
    minter = Minter(credential, audience)
    return [kind(minter) for kind in _AIO_KINDS]


def pins_file(name: str) -> str:
    """The file name of eavesdropper ``name``'s pins in a credentials folder."""
    return f"{name}.pins"


def init_dir(directory: Path, eavesdroppers: Sequence[str], key: bytes | None = None) -> bytes:
    """Write ``authority.key``, one ``<principal>.credential`` per service and one ``<eavesdropper>.pins`` per
    eavesdropper into ``directory`` (files 0600).

    Principals: ``control``, ``transmitter``, ``receiver`` and each eavesdropper's link name. An existing key is
    reused, so adding an eavesdropper later keeps every issued credential valid.
    """
    directory.mkdir(parents=True, exist_ok=True)
    key_file = directory / "authority.key"
    if key is None:
        key = read_key(key_file) if key_file.exists() else secrets.token_bytes(KEY_BYTES)
    write_private(key_file, key.hex())
    for role in (CONTROL, TRANSMITTER, RECEIVER):
        write_private(directory / f"{role}.credential", issue(key, role, role))
    for name in eavesdroppers:
        write_private(directory / f"{name}.credential", issue(key, EAVESDROPPER, name))
        write_private(directory / pins_file(name), pins_line(key, eavesdropper_audience(name)))
    return key


def write_private(path: Path, text: str) -> None:
    """``text`` and a newline into ``path``, created 0600 (an existing file is truncated and made 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m services_common.auth", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("init", help="write an authority key, the services' credentials and the eavesdroppers' pins")
    i.add_argument("dir", type=Path)
    i.add_argument("--eavesdroppers", default="", help="comma-separated eavesdropper link names")
    s = sub.add_parser("issue", help="print one credential")
    s.add_argument("--key-file", required=True)
    s.add_argument("--role", required=True, choices=ROLES)
    s.add_argument("--name", required=True)
    q = sub.add_parser("pins", help="print the pins line with which AUDIENCE verifies the panel's tokens")
    q.add_argument("--key-file", required=True)
    q.add_argument("--audience", required=True, help="e.g. eavesdropper:eve")
    args = p.parse_args(argv)
    try:
        if args.cmd == "init":
            names = [n for n in args.eavesdroppers.split(",") if n]
            init_dir(args.dir, names)
            print(f"wrote {args.dir}/authority.key and credentials for control, transmitter, receiver"
                  + "".join(f", {n}" for n in names))
        elif args.cmd == "issue":
            print(issue(read_key(args.key_file), args.role, args.name))
        else:
            if not AUDIENCE_RE.match(args.audience):
                raise ValueError(f"audience {args.audience!r}: a service name, or eavesdropper:<name>")
            print(pins_line(read_key(args.key_file), args.audience))
    except (ValueError, OSError) as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
