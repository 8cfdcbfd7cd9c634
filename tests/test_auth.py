"""Signed role credentials (services_common/auth.py): what verifies, what is refused, and why."""

from __future__ import annotations

import secrets
import stat
from pathlib import Path

import grpc
import pytest

from services_common import auth

KEY = secrets.token_bytes(auth.KEY_BYTES)


class Ctx:
    def __init__(self, credential: str | None):
        self.md = auth.call_metadata(credential)

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.md


def test_a_credential_names_its_role_and_name() -> None:
    who = auth.Verifier(KEY).require(Ctx(auth.issue(KEY, auth.EAVESDROPPER, "eve")), [auth.EAVESDROPPER], "eve")
    assert who == auth.Identity(auth.EAVESDROPPER, "eve")


def test_a_credential_signed_with_another_key_is_unauthenticated() -> None:
    forged = auth.issue(secrets.token_bytes(auth.KEY_BYTES), auth.RECEIVER, "receiver")
    with pytest.raises(auth.AuthError) as e:
        auth.Verifier(KEY).require(Ctx(forged), [auth.RECEIVER])
    assert e.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_an_eavesdropper_cannot_rename_its_own_credential_into_the_receiver() -> None:
    role_swapped = auth.issue(KEY, auth.EAVESDROPPER, "eve").replace("eavesdropper", "receiver", 1)
    with pytest.raises(auth.AuthError, match="signature"):
        auth.Verifier(KEY).require(Ctx(role_swapped), [auth.RECEIVER])


def test_wrong_role_or_name_is_permission_denied_and_none_is_unauthenticated() -> None:
    v = auth.Verifier(KEY)
    eve = auth.issue(KEY, auth.EAVESDROPPER, "eve")
    for roles, name in (([auth.RECEIVER], None), ([auth.EAVESDROPPER], "far-eve")):
        with pytest.raises(auth.AuthError) as e:
            v.require(Ctx(eve), roles, name)
        assert e.value.code == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(auth.AuthError, match="no credential") as e:
        v.require(Ctx(None), [auth.CONTROL])
    assert e.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_init_writes_private_files_and_keeps_the_key_when_names_are_added(tmp_path: Path) -> None:
    key = auth.init_dir(tmp_path, ["eve"])
    assert auth.init_dir(tmp_path, ["eve", "far-eve"]) == key
    for name in ("control", "transmitter", "receiver", "eve", "far-eve"):
        path = tmp_path / f"{name}.credential"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        auth.Verifier(key).identify(auth.call_metadata(auth.read_credential(path)))
    bad = tmp_path / "bad.key"
    bad.write_text("root:x:0:0:root:/root:/bin/bash")
    with pytest.raises(ValueError) as e:
        auth.read_key(bad)
    assert "root" not in str(e.value).replace(str(tmp_path), "")
