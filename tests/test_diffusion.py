"""The training timestep table: identity without focus, the requested share inside the focus band."""

import pytest
import torch

from diffsem.config import build
from diffsem.diffusion import timestep_table
from diffsem.errors import ConfigError
from diffsem.train import TrainConfig


def test_no_focus_is_uniform_sampling_unchanged():
    assert torch.equal(timestep_table(1000, (300, 800), 0.0), torch.arange(1000))


@pytest.mark.parametrize("weight", [0.25, 0.5, 0.9])
def test_focus_band_gets_its_share(weight):
    table = timestep_table(1000, (300, 800), weight)
    inside = float(((table >= 300) & (table < 800)).float().mean())
    assert inside == pytest.approx((1 - weight) * 0.5 + weight, abs=0.002)
    assert bool((table[1:] >= table[:-1]).all()) and int(table.min()) >= 0 and int(table.max()) <= 999
    assert int(table[0]) <= 10 and int(table[-1]) >= 990  # the ends of the schedule are still trained


@pytest.mark.parametrize("values", [{"unet_focus_weight": 1.0}, {"unet_focus_weight": -0.1},
                                    {"unet_focus_timesteps": (800, 300)}])
def test_bad_focus_is_a_config_error(values):
    with pytest.raises(ConfigError, match="unet_focus"):
        build(TrainConfig, **values)


def test_focus_beyond_the_schedule_fails_before_training(tmp_path):
    from diffsem.train import train_all

    with pytest.raises(ConfigError, match="num_train_timesteps=1000"):
        train_all(TrainConfig(unet_focus_timesteps=(300, 2000)), tmp_path / "ck")
    assert not (tmp_path / "ck").exists()
