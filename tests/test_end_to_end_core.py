"""Train and evaluate on a real MNIST slice, and check the committed default checkpoints."""

import json

import torch

from diffsem.bundle import encode_all, load_bundle
from diffsem.data import load_split
from diffsem.evaluate import EvalConfig, evaluate
from diffsem.receiver import DiffusionReceiver
from diffsem.report import write_all
from diffsem.train import TrainConfig, train_all


def test_small_train_then_eval_is_well_above_chance(tmp_path):
    tc = TrainConfig(max_train=3000, epochs_encoder=2, epochs_unet=1, epochs_judge=1, epochs_eavesdropper=1)
    train_all(tc, tmp_path / "ck")
    bundle = load_bundle(tmp_path / "ck", device="cpu")
    images, labels = load_split("mnist", "test")
    ec = EvalConfig(n=300, snrs=[10.0], t_stars=[100], default_t_star=100, eve_offsets=[0.0])
    res = evaluate(bundle, ec, images[:300], labels[:300])
    assert res["clean_accuracy"] > 0.6
    row = next(r for r in res["rows"] if r["t_star"] == 100)
    assert row["acc"]["direct"] > 0.5 and row["acc"]["denoise"] > 0.3
    paths = write_all(res, tmp_path / "eval")
    for p in paths.values():
        assert p.stat().st_size > 0
    assert json.loads(paths["json"].read_text())["n"] == 300


def test_committed_mnist_checkpoint_reaches_its_clean_accuracy(mnist_bundle):
    images, labels = load_split("mnist", "test")
    s = encode_all(mnist_bundle, images[:1000])
    decided = DiffusionReceiver(mnist_bundle).decode(s, torch.ones(1000), "direct").labels
    assert float((decided == labels[:1000]).float().mean()) >= 0.985


def test_eval_is_reproducible_from_its_seed(mnist_bundle):
    images, labels = load_split("mnist", "test")
    ec = EvalConfig(n=200, snrs=[0.0], t_stars=[400], default_t_star=400, eve_offsets=[-5.0], batch_size=64)
    a = evaluate(mnist_bundle, ec, images[:200], labels[:200])
    b = evaluate(mnist_bundle, ec, images[:200], labels[:200])
    assert a["rows"] == b["rows"]
    c = evaluate(mnist_bundle, ec.model_copy(update={"seed": 1}), images[:200], labels[:200])
    assert a["rows"] != c["rows"]


def test_cli_eval_writes_every_artefact(tmp_path, cli):
    out = tmp_path / "ev"
    done = cli("eval", "--n", "100", "--snrs", "0,20", "--t-stars", "200,500", "--default-t-star", "200", "--out", str(out))
    assert done.code == 0, done.err
    assert "Headline checks" in done.out
    for name in ("results.json", "table.md", "acc_vs_snr.png", "acc_vs_tstar.png", "eve_view.png"):
        assert (out / name).stat().st_size > 0
