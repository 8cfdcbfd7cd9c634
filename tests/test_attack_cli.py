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


def test_eval_with_attacks_writes_the_attack_report(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """`diffsem eval --attacks` runs the zoo after the sweep, at the sweep's t* levels (and none) and offsets."""
    import json

    args = ["eval", "--n", "60", "--snrs=20", "--t-stars", "300", "--eve-offsets=0,-5", "--modes", "direct",
            "--attacks", "feature-classifier,inversion-decoder", "--self-noise", "random", "--device", "cpu",
            "--out", str(tmp_path)]
    assert main(args) == 0, capsys.readouterr().err
    res = json.loads((tmp_path / "attacks" / "attacks.json").read_text())
    rows = res["rows"]
    assert res["config"]["n"] == 60 and res["config"]["code_version"]
    assert (tmp_path / "attacks" / "secrecy_gap.png").stat().st_size > 1000
    assert {r["attack"] for r in rows} == {"feature-classifier", "inversion-decoder"}
    assert {r["t_star"] for r in rows} == {None, 300} and {r["eve_offset_db"] for r in rows} == {0.0, -5.0}
    plain = [r for r in rows if r["t_star"] is None and r["eve_offset_db"] == 0.0]
    assert all(r["attacker_acc"] > 0.5 for r in plain), plain  # leakage without protection: far above chance
    assert (tmp_path / "results.json").exists()


def test_eval_with_unknown_attack_fails_before_the_sweep(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--n", "10", "--attacks", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown attack 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()


def test_attack_eval_writes_judging_pools_with_the_judge_free_measures(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """--pools writes one pool per reconstruction row (the row's labels, every judge's, k-NN and SSIM-NN, and clean
    attention checks); --neighbours puts the judge-free accuracies and each attack's threat model in the table."""
    import json

    from diffsem.pools import read_pool

    args = ["attack", "eval", "--attacks", "feature-classifier,inversion-decoder", "--n", "24", "--snrs=20",
            "--t-stars", "none", "--eve-offsets=0", "--self-noise", "random", "--device", "cpu", "--neighbours",
            "--pools", str(tmp_path / "pools"), "--pool-size", "10", "--out", str(tmp_path / "out")]
    assert main(args) == 0, capsys.readouterr().err
    rows = json.loads((tmp_path / "out" / "attacks.json").read_text())["rows"]
    assert {r["attack"]: r["threat_model"] for r in rows} == {"feature-classifier": "query", "inversion-decoder": "query"}
    inv = next(r for r in rows if r["attack"] == "inversion-decoder")
    assert set(inv["neighbours"]) == {"knn", "ssim-nn"} and inv["neighbours"]["ssim-nn"] > 0.5
    assert "| threat model |" in (tmp_path / "out" / "attacks.md").read_text()
    pool = read_pool(tmp_path / "pools", "mnist-inversion-decoder-20db-random-tnone-eve0")  # labels-only: no pool
    assert len(pool.labels) == 10 and len(pool.check_labels) == 50
    assert {"cnn", "robust", "abstain", "knn", "ssim-nn"} <= set(pool.judge_labels)
    assert pool.card["threat_model"] == "query" and pool.card["figures"]["over_images"] == 24
    assert sorted(p.name for p in (tmp_path / "pools").iterdir()) == [f"{pool.name}.json", f"{pool.name}.npz"]
    assert main(args[:5] + ["9960"] + args[6:]) == 2
    assert "--pools keeps the last 50 test images" in capsys.readouterr().err
    assert main(args[:-4] + ["--pool-size", "0"] + args[-2:]) == 2
    assert "--pool-size 0: a pool keeps at least 1 reconstruction" in capsys.readouterr().err
