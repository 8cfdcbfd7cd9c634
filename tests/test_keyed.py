"""Keyed self-noise: reproducible CPU draws, unique nonces across restarts, the receiver's subtraction and
abar_eff = a / (a + sigma_c^2), and clear errors for a missing or wrong key (never showing the key)."""

from __future__ import annotations

import pytest
import torch

from diffsem.config import ModelConfig
from diffsem.diffusion import alphas_cumprod
from diffsem.keyed import KeyedNoiseError, NonceSource, keyed_eps, load_key
from diffsem.pipeline import keyed_listener_view, keyed_self_noise_frame, listener_view

KEY = bytes(range(32))


def test_same_key_and_nonce_same_noise_other_nonce_or_key_differs() -> None:
    a, b = keyed_eps(KEY, b"n" * 16, 256), keyed_eps(KEY, b"n" * 16, 256)
    assert torch.equal(a, b) and a.dtype == torch.float32
    assert not torch.allclose(a, keyed_eps(KEY, b"m" * 16, 256))
    assert not torch.allclose(a, keyed_eps(bytes(32), b"n" * 16, 256))
    big = torch.cat([keyed_eps(KEY, bytes([i]) * 16, 4096) for i in range(8)])
    assert abs(float(big.mean())) < 0.03 and abs(float(big.var()) - 1) < 0.03


def test_nonces_never_repeat_across_restarts() -> None:
    seen: set[bytes] = set()
    for _ in range(50):  # 50 transmitter "restarts", each sending 200 frames from sequence number 0
        ns = NonceSource().take(200)
        assert len(set(ns)) == 200
        assert not seen & set(ns)
        seen |= set(ns)


def test_receiver_subtracts_key_noise_and_eavesdropper_does_not() -> None:
    cfg = ModelConfig()
    abar = alphas_cumprod(cfg)
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(512, 256, generator=gen)
    s = s / s.pow(2).mean(1, keepdim=True).sqrt()
    sigma_c2 = 0.01  # 20 dB
    x, header, info = keyed_self_noise_frame(s, 400, abar, sigma_c2, KEY, NonceSource())
    y = x + sigma_c2 ** 0.5 * torch.randn(x.shape, generator=gen)
    z, level = keyed_listener_view(y, header, sigma_c2, info, KEY)
    a = header.a
    assert torch.allclose(level, torch.full_like(level, a / (a + sigma_c2)))
    # z = sqrt(level) s + sqrt(1 - level) n, with unit-variance residual noise
    resid = (z - level.sqrt()[:, None] * s) / (1 - level).sqrt()[:, None]
    assert abs(float(resid.var()) - 1) < 0.02
    _, eve_level = listener_view(y, header, sigma_c2)
    assert float(eve_level[0]) < 0.6 * float(level[0])  # the eavesdropper sees the full self-noise


def test_missing_or_wrong_key_is_a_clear_error_without_the_key(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    abar = alphas_cumprod(ModelConfig())
    x, header, info = keyed_self_noise_frame(torch.ones(2, 256), 300, abar, 0.01, KEY, NonceSource())
    with pytest.raises(KeyedNoiseError, match="no key"):
        keyed_listener_view(x, header, 0.01, info, None)
    with pytest.raises(KeyedNoiseError, match="different key") as err:
        keyed_listener_view(x, header, 0.01, info, bytes(32))
    assert KEY.hex() not in str(err.value)
    monkeypatch.delenv("DIFFSEM_SELF_NOISE_KEY", raising=False)
    with pytest.raises(KeyedNoiseError, match="DIFFSEM_SELF_NOISE_KEY"):
        load_key()
    monkeypatch.setenv("DIFFSEM_SELF_NOISE_KEY", KEY.hex())
    assert load_key() == KEY
    f = tmp_path / "key"
    f.write_text(KEY.hex())
    assert load_key(f) == KEY
    f.write_text("ab")
    with pytest.raises(KeyedNoiseError, match="at least"):
        load_key(f)
