"""``diffsem attack``: list, and one-line errors (exit 2) for an unknown attack and for whitebox without the
transmitter checkpoint."""

from __future__ import annotations

import pytest

from diffsem.cli import main


def test_attack_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["attack", "list"]) == 0
    names = capsys.readouterr().out.split()
    assert {"feature-classifier", "inversion-decoder", "whitebox-inversion", "adaptive-diffusion"} <= set(names)


@pytest.mark.parametrize(("attacks", "message"), [
    ("nope", "unknown attack 'nope'; known attacks: "),
    ("whitebox-inversion", "must be enabled explicitly"),
])
def test_attack_eval_bad_input_is_one_line(attacks: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["attack", "eval", "--attacks", attacks, "--n", "10", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_attack_train_untrainable_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["attack", "train", "--attack", "feature-classifier"]) == 2
    assert "nothing to train" in capsys.readouterr().err
