"""Invalid configuration and bad CLI input give one clear line, never a torch traceback."""

import math
import subprocess
import sys

import pytest

from diffsem.config import LinkConfig, ModelConfig, PrivacyConfig, build
from diffsem.errors import ConfigError


@pytest.mark.parametrize(("cls", "values", "needle"), [
    (ModelConfig, {"k": 255}, "must be a positive even number"),
    (ModelConfig, {"k": 200}, "multiple of 64"),
    (PrivacyConfig, {"t_star": 1000}, "must be in [0, 1000)"),
    (PrivacyConfig, {"t_star": -1}, "must be in [0, 1000)"),
    (LinkConfig, {"snr_db": math.nan}, "must be a finite number of dB"),
    (LinkConfig, {"snr_db": math.inf}, "must be a finite number of dB"),
    (LinkConfig, {"erasure_prob": 1.5}, "erasure_prob=1.5 is out of range [0, 1]"),
])
def test_invalid_config_is_a_config_error(cls, values, needle):
    with pytest.raises(ConfigError) as err:
        build(cls, **values)
    assert needle in str(err.value)


@pytest.mark.parametrize(("args", "needle"), [
    (["train", "--k", "129", "--max-train", "10"], "positive even number"),
    (["eval", "--n", "10", "--t-stars", "100,1000"], "must be in [0, 1000)"),
    (["eval", "--n", "10", "--snrs", "0,nan"], "finite number of dB"),
    (["eval", "--n", "10", "--k", "128"], "k=256 but k=128 was requested"),
    (["eval", "--dataset", "fashion-mnist", "--checkpoints", "checkpoints/mnist", "--n", "10"], "fashion-mnist"),
    (["eval", "--modes", "direct,magic"], "subset of direct, denoise, selfref"),
    (["eval", "--n", "10", "--phy", "ofdm", "--speed-kmh", "-1"], "speed_kmh=-1.0 km/h is out of range [0, 500] km/h"),
    (["eval", "--n", "10", "--phy", "ofdm", "--fft-size", "8"], "has 96 data REs; a frame of k=256 real values needs 128"),
    (["eval", "--n", "10", "--channel-model", "TDL-A"], "--channel-model needs --phy ofdm"),
])
def test_cli_reports_bad_input_in_one_line(args, needle, cli, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    done = cli(*args)
    assert done.code == 2, done.err
    assert needle in done.err and len(done.err.strip().splitlines()) == 1


def test_the_installed_command_exits_2_with_one_line_and_no_traceback(repo_root):
    """The cases above run in this process; this one goes through a fresh interpreter, as a user's shell does."""
    done = subprocess.run([sys.executable, "-m", "diffsem.cli", "eval", "--n", "10", "--k", "128"], capture_output=True,
                          text=True, timeout=120, cwd=repo_root)
    assert done.returncode == 2, done.stderr
    assert "k=256 but k=128 was requested" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_train_options_reach_the_training_config_with_its_defaults(cli, monkeypatch, tmp_path):
    """``diffsem train``'s options are TrainConfig's described fields: given ones override, the rest keep its defaults."""
    import diffsem.train

    seen = []
    monkeypatch.setattr(diffsem.train, "train_all", lambda tc, out, data_dir: seen.append((tc, out)))
    done = cli("train", "--out", str(tmp_path), "--epochs-unet", "1", "--unet-focus-weight", "0.25", "--max-train", "10")
    assert done.code == 0, done.err
    (tc, out), = seen
    assert out == tmp_path and (tc.epochs_unet, tc.unet_focus_weight, tc.max_train) == (1, 0.25, 10)
    assert (tc.k, tc.seed, tc.epochs_encoder) == (256, 0, 6)  # not given: TrainConfig's defaults
