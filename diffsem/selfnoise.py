"""Self-noising at the transmitter and the receiver's view of it (docs/design.md §3).

All variances are per real latent dimension. With target a = abar_{t*} and the legitimate link's
sigma_c^2 (channel-state feedback), the transmitter sends

    x = sqrt(a) s + sigma_self eps_self,   sigma_self^2 = max(0, 1 - a - sigma_c^2)

so its power a + sigma_self^2 is at most 1. A listener whose own channel adds sigma^2 receives
y = sqrt(a) s + sqrt(sigma_self^2 + sigma^2) eps, and y / sqrt(a + sigma_self^2 + sigma^2) is exactly a
diffusion latent z_t at abar_eff = a / (a + sigma_self^2 + sigma^2).

Variances are one value per frame (B,) on a flat link, or one per real latent dim (B, k) on an ofdm link (per
resource element, docs/design.md §3, per-RE self-noise); every function here broadcasts both.
"""

from __future__ import annotations

import torch


def sigma_self2(a: float | torch.Tensor, sigma_c2: float | torch.Tensor) -> torch.Tensor:
    """The self-noise power rule: sigma_self^2 = max(0, 1 - a - sigma_c^2), so the power a + sigma_self^2 stays <= 1.

    Input: a = abar_{t*}; sigma_c2, the fed-back noise per real dim, scalar, (B,) or (B, k). Output: float64, the
    shape of ``sigma_c2``."""
    a = torch.as_tensor(a, dtype=torch.float64)
    # docs/design.md §3 (self-noise; per RE: per-RE self-noise); the paper's self-noising (arXiv 2506.19886)
    return torch.clamp(1.0 - a - torch.as_tensor(sigma_c2, dtype=torch.float64), min=0.0)


def abar_eff(a: float | torch.Tensor, s2_self: float | torch.Tensor, s2_channel: float | torch.Tensor) -> torch.Tensor:
    """The level a listener sees, abar_eff = a / (a + sigma_self^2 + sigma^2).

    Input: a; s2_self, s2_channel: scalars, (B,) or (B, k), per real dim. Output: float64, broadcast."""
    a = torch.as_tensor(a, dtype=torch.float64)
    # docs/design.md §3 (self-noise): y / sqrt(a + sigma_self^2 + sigma^2) is z_t at this level (the paper's abar_eff)
    return a / (a + torch.as_tensor(s2_self, dtype=torch.float64) + torch.as_tensor(s2_channel, dtype=torch.float64))


def per_row(v: torch.Tensor) -> torch.Tensor:
    """A level per frame (B,) or scalar as a column (B, 1) that broadcasts over k; a level per dim (B, k) as is."""
    return v if v.dim() == 2 else v.reshape(-1, 1)


def apply_self_noise(s: torch.Tensor, a: float, s2_self: torch.Tensor, eps_self: torch.Tensor) -> torch.Tensor:
    """Transmit signal x = sqrt(a) s + sigma_self eps_self.

    s: (B, k) unit-power latents. s2_self: scalar, (B,) or (B, k). eps_self: (B, k) standard normal.
    Returns (B, k) with power a + sigma_self^2 <= 1 per real dim.
    """
    std = per_row(torch.as_tensor(s2_self, dtype=s.dtype, device=s.device).sqrt())
    return a ** 0.5 * s + std * eps_self  # x = sqrt(a) s + sigma_self eps_self, docs/design.md §3 (self-noise)


def normalise_received(y: torch.Tensor, a: float, s2_self: torch.Tensor, s2_channel: torch.Tensor) -> torch.Tensor:
    """Scale a received latent (B, k) to unit total variance, i.e. to z_t at :func:`abar_eff`; per dim when
    either variance is (B, k)."""
    total = torch.as_tensor(a) + torch.as_tensor(s2_self) + torch.as_tensor(s2_channel)
    return y / per_row(total.to(y.dtype).to(y.device).sqrt())  # z = y / sqrt(a + s2_self + s2), docs/design.md §3
