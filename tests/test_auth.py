"""Principal credentials and audience-bound, expiring tokens (services_common/auth.py): what verifies, what is refused,
and why. Rewritten for v2 credentials (issue 19): a credential is now a principal's secret that never travels, and
what a call carries is a token for one audience that expires, so the tests mint tokens where they presented
credentials before."""

from __future__ import annotations

import secrets
import stat
from pathlib import Path

import grpc
import pytest

from services_common import auth

KEY = secrets.token_bytes(auth.KEY_BYTES)
NOW = 1_800_000_000.0
EMU = auth.EMULATOR_AUDIENCE


class Ctx:
    """A call's context carrying ``token`` (or nothing)."""

    def __init__(self, token: str | None):
        self.md = ((auth.METADATA_KEY, token),) if token else ()

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.md


def verifier(audience: str = EMU, at: float = NOW, key: bytes | None = KEY, **kw: object) -> auth.Verifier:
    return auth.Verifier(key, audience=audience, clock=lambda: at, **kw)  # type: ignore[arg-type]


def tok(role: str, name: str, audience: str = EMU, at: float = NOW, key: bytes = KEY) -> str:
    return auth.token(auth.issue(key, role, name), audience, now=at)


def code_of(v: auth.Verifier, token: str | None, roles: list[str], name: str | None = None) -> grpc.StatusCode:
    with pytest.raises(auth.AuthError) as e:
        v.require(Ctx(token), roles, name)
    return e.value.code


def test_a_token_names_its_principal() -> None:
    who = verifier().require(Ctx(tok(auth.EAVESDROPPER, "eve")), [auth.EAVESDROPPER], "eve")
    assert who == auth.Identity(auth.EAVESDROPPER, "eve")


def test_a_token_signed_under_another_key_is_unauthenticated() -> None:
    forged = tok(auth.RECEIVER, "receiver", key=secrets.token_bytes(auth.KEY_BYTES))
    assert code_of(verifier(), forged, [auth.RECEIVER]) == grpc.StatusCode.UNAUTHENTICATED


def test_an_eavesdropper_cannot_rename_its_own_token_into_the_receiver() -> None:
    role_swapped = tok(auth.EAVESDROPPER, "eve").replace("eavesdropper", "receiver", 1)
    with pytest.raises(auth.AuthError, match="signature"):
        verifier().require(Ctx(role_swapped), [auth.RECEIVER])


def test_a_token_is_valid_only_at_the_service_it_names() -> None:
    """What the panel sends an eavesdropper's Attack/Info, replayed at the emulator, is refused there."""
    to_eve = tok(auth.CONTROL, auth.CONTROL, auth.eavesdropper_audience("eve"))
    assert verifier(auth.eavesdropper_audience("eve")).require(Ctx(to_eve), [auth.CONTROL])
    with pytest.raises(auth.AuthError, match="valid only at the service it names") as e:
        verifier(EMU).require(Ctx(to_eve), [auth.CONTROL])
    assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
    # the audience is signed: rewriting it breaks the signature
    rewritten = to_eve.replace(auth.eavesdropper_audience("eve"), EMU)
    assert code_of(verifier(EMU), rewritten, [auth.CONTROL]) == grpc.StatusCode.UNAUTHENTICATED


def test_a_token_expires_and_a_far_expiry_is_refused() -> None:
    t = tok(auth.RECEIVER, "receiver", at=NOW)
    exp = NOW + auth.TOKEN_TTL_S
    assert verifier(at=exp + auth.SKEW_S).require(Ctx(t), [auth.RECEIVER])  # within the allowed skew
    with pytest.raises(auth.AuthError, match="expired"):
        verifier(at=exp + auth.SKEW_S + 1).require(Ctx(t), [auth.RECEIVER])
    long_lived = auth.token(auth.issue(KEY, auth.RECEIVER, "receiver"), EMU, now=NOW, ttl_s=10 * auth.MAX_TTL_S)
    with pytest.raises(auth.AuthError, match="at most"):
        verifier(at=NOW).require(Ctx(long_lived), [auth.RECEIVER])


def test_wrong_role_or_name_is_permission_denied_and_none_is_unauthenticated() -> None:
    eve = tok(auth.EAVESDROPPER, "eve")
    assert code_of(verifier(), eve, [auth.RECEIVER]) == grpc.StatusCode.PERMISSION_DENIED
    assert code_of(verifier(), eve, [auth.EAVESDROPPER], "far-eve") == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(auth.AuthError, match="no credential") as e:
        verifier().require(Ctx(None), [auth.CONTROL])
    assert e.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_a_credential_is_never_accepted_in_place_of_a_token() -> None:
    with pytest.raises(auth.AuthError, match="never the credential itself"):
        verifier().require(Ctx(auth.issue(KEY, auth.CONTROL, auth.CONTROL)), [auth.CONTROL])


def test_pins_verify_the_panel_to_one_eavesdropper_and_mint_nothing_else() -> None:
    """An eavesdropper holds only A = HMAC(S_control, its audience): it verifies the panel's tokens to itself, and a
    token it signs with A is refused everywhere else (the audience key of another service differs)."""
    aud = auth.eavesdropper_audience("eve")
    pins_text = auth.pins_line(KEY, aud)
    assert pins_text.split()[1:] == [auth.CONTROL, auth.CONTROL] and "v2." not in pins_text
    a_hex = pins_text.split()[0]
    pinned = auth.Verifier(None, {auth.Identity(auth.CONTROL, auth.CONTROL): bytes.fromhex(a_hex)}, aud,
                           clock=lambda: NOW)
    assert pinned.require(Ctx(tok(auth.CONTROL, auth.CONTROL, aud)), [auth.CONTROL])
    assert code_of(pinned, tok(auth.RECEIVER, "receiver", aud), [auth.CONTROL]) == grpc.StatusCode.UNAUTHENTICATED
    # what the eavesdropper can mint with A, for the emulator: the signature does not verify there
    import hashlib
    import hmac

    exp = str(int(NOW + 60))
    minted = f"v2.control.control.{EMU}.{exp}.{hmac.new(bytes.fromhex(a_hex), exp.encode(), hashlib.sha256).hexdigest()}"
    with pytest.raises(auth.AuthError, match="signature"):
        verifier(EMU).require(Ctx(minted), [auth.CONTROL])


def test_init_writes_private_files_and_keeps_the_key_when_names_are_added(tmp_path: Path) -> None:
    key = auth.init_dir(tmp_path, ["eve"])
    assert auth.init_dir(tmp_path, ["eve", "far-eve"]) == key
    for name in ("control", "transmitter", "receiver", "eve", "far-eve"):
        path = tmp_path / f"{name}.credential"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        cred = auth.Credential.parse(auth.read_credential(path))
        assert cred.name == name
    assert stat.S_IMODE((tmp_path / auth.pins_file("eve")).stat().st_mode) == 0o600
    assert set(auth.read_pins(tmp_path / auth.pins_file("eve"))) == {auth.Identity(auth.CONTROL, auth.CONTROL)}
    bad = tmp_path / "bad.key"
    bad.write_text("root:x:0:0:root:/root:/bin/bash")
    with pytest.raises(ValueError) as e:
        auth.read_key(bad)
    assert "root" not in str(e.value).replace(str(tmp_path), "")
    old = tmp_path / "old.credential"
    old.write_text("v1.control.control." + "0" * 64)
    with pytest.raises(ValueError, match="v1 credential"):
        auth.read_credential(old)
