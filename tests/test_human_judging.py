"""Human-judging arithmetic, judging pools, the judge-free measures and the abstaining judge's parts
(docs/design.md §4). Every "answer" here is made up by the test to check arithmetic; none is a person's."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import binomtest
from torchmetrics.functional.image import structural_similarity_index_measure

from control_panel.store import Store
from diffsem.abstain import blends, gaussian_noise, noise, scribbles, uniform_noise
from diffsem.calibration import CANT_TELL, CHECK, RECONSTRUCTION, Answered, figures, wilson
from diffsem.config import ModelConfig
from diffsem.data import load_split
from diffsem.judges import ABSTAIN, decide
from diffsem.models import AbstainingJudge, StridedJudge
from diffsem.neighbours import Neighbours, reference_set, ssim_matrix, vote
from diffsem.pools import PoolError, pool_files, pool_name, read_pool, write_pool


def test_wilson_interval_matches_scipy() -> None:
    for k, n in ((7, 40), (0, 12), (12, 12), (1, 1), (50, 100)):
        ref = binomtest(k, n).proportion_ci(method="wilson")
        assert wilson(k, n) == pytest.approx((ref.low, ref.high), abs=1e-12), (k, n)
    assert wilson(0, 0) == (0.0, 1.0)


def test_figures_count_cant_tell_as_not_recognised_and_score_each_judge() -> None:
    items = [Answered(RECONSTRUCTION, 3, 3, {"a": 3, "b": 5, "c": ABSTAIN}),
             Answered(RECONSTRUCTION, 4, CANT_TELL, {"a": 4, "b": 1, "c": ABSTAIN}),
             Answered(RECONSTRUCTION, 7, CANT_TELL, {"a": 2, "b": 7, "c": 7}),
             Answered(RECONSTRUCTION, 1, 9, {"a": 1, "b": 9, "c": ABSTAIN}),
             Answered(CHECK, 0, 0), Answered(CHECK, 8, 3)]
    f = figures(items)
    assert f["answers"] == 6
    assert (f["human"]["n"], f["human"]["correct"], f["human"]["cant_tell"]) == (4, 1, 2)
    assert f["human"]["accuracy"] == 0.25 and f["human"]["ci95"] == pytest.approx(list(wilson(1, 4)))
    assert (f["attention"]["correct"], f["attention"]["n"]) == (1, 2)
    a, b, c = f["judges"]["a"], f["judges"]["b"], f["judges"]["c"]
    assert (a["accuracy"], a["agreement"], a["agreement_on_labelled"]) == (0.75, 0.25, 0.5)
    assert a["on_cant_tell"] == {"n": 2, "correct": 0.5, "incorrect": 0.5, "abstained": 0.0}
    assert (b["agreement"], b["agreement_on_labelled"]) == (0.25, 0.5)  # agrees with the wrong 9
    assert c["agreement"] == 0.25 and c["on_cant_tell"] == {"n": 2, "correct": 0.5, "incorrect": 0.0, "abstained": 0.5}
    assert f["best_judge"] == {"judge": "a", "agreement": 0.25, "answers": 4}  # a tie goes to the first name
    assert figures([])["best_judge"] is None and figures([])["human"]["accuracy"] is None


def test_stored_answers_cannot_change_or_go_even_through_sql(tmp_path: Path) -> None:
    store = Store(tmp_path / "panel.db")
    with store.transaction() as c:
        c.execute("INSERT INTO judging_sets(id, pool, created, items, card) VALUES ('s', 'p', 0, 2, '{}')")
        c.executemany("INSERT INTO judging_items(set_id, pos, kind, pool_index, truth, judges, image) "
                      "VALUES ('s', ?, 'reconstruction', 0, 1, '{}', x'00')", [(0,), (1,)])
        c.execute("UPDATE judging_items SET answer=3 WHERE pos=0")
    for sql in ("UPDATE judging_items SET answer=4 WHERE pos=0", "DELETE FROM judging_items WHERE pos=0"):
        with pytest.raises(sqlite3.IntegrityError, match="stored answer is final|answered item is kept"):
            store.conn.execute(sql)
    store.conn.execute("DELETE FROM judging_items WHERE pos=1")  # an unanswered item may go (nothing was said)
    assert store.conn.execute("SELECT pos, answer FROM judging_items").fetchall() == [(0, 3)]
    store.close()


def test_a_pool_round_trips_and_only_its_own_names_are_read(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images, checks = rng.random((6, 1, 28, 28)), rng.random((2, 1, 28, 28))
    row = {"attack": "fora", "snr_db": 20.0, "self_noise": "random", "t_star": None, "eve_offset_db": -5.0}
    name = pool_name("mnist", row)
    assert name == "mnist-fora-20db-random-tnone-eve-5"
    write_pool(tmp_path, name, images, np.arange(6) % 10, {"cnn": np.arange(6) % 10, "abstain": -np.ones(6)},
               checks, np.array([1, 2]), {"dataset": "mnist", "attack": "fora", "threat_model": "none"})
    pool = read_pool(tmp_path, name)
    assert pool.images.dtype == np.uint8 and pool.images.shape == (6, 28, 28)
    assert np.abs(pool.images / 255.0 - images[:, 0]).max() <= 0.5 / 255 + 1e-9
    assert pool.judge_labels["abstain"].tolist() == [-1] * 6 and pool.check_labels.tolist() == [1, 2]
    assert pool.card["threat_model"] == "none" and pool.card["judges"] == ["cnn", "abstain"]
    outside = tmp_path.parent / "outside.npz"
    outside.write_bytes((tmp_path / f"{name}.npz").read_bytes())
    (tmp_path / "link.npz").symlink_to(outside)
    (tmp_path / "link.json").write_text("{}")
    assert pool_files(tmp_path) == [name]
    for bad in ("link", f"../{tmp_path.name}/{name}", "", "x" * 200, "nope"):
        with pytest.raises(PoolError, match=f"no pool .*pools: {name}"):
            read_pool(tmp_path, bad)


def test_ssim_matrix_is_torchmetrics_ssim_and_a_reference_is_its_own_nearest_neighbour() -> None:
    refs, ref_labels = reference_set("mnist", n=200)
    x = refs[:5] * 0.9
    sim = ssim_matrix(x, refs[:7])
    for i in range(5):
        for j in range(7):
            ref = structural_similarity_index_measure(x[i:i + 1], refs[j:j + 1], data_range=1.0)
            assert float(sim[i, j]) == pytest.approx(float(ref), abs=1e-5)
    near = Neighbours(StridedJudge(ModelConfig()), refs, ref_labels, k=1)
    labels = near.labels(refs[:20])
    assert torch.equal(labels["ssim-nn"], ref_labels[:20]) and torch.equal(labels["knn"], ref_labels[:20])


def test_the_vote_takes_the_majority_and_breaks_ties_by_similarity() -> None:
    ref_labels = torch.tensor([1, 1, 2, 2, 3])
    sim = torch.tensor([[0.9, 0.8, 0.1, 0.2, 0.0],    # 1, 1 among the top 3 -> 1
                        [0.5, 0.1, 0.6, 0.1, 0.55],   # 2, 3, 1 all once: the most similar wins -> 2
                        [0.2, 0.3, 0.9, 0.95, 0.1]])
    assert vote(sim, ref_labels, k=3, classes=4).tolist() == [1, 2, 2]


def test_negatives_are_images_and_differ_from_digits() -> None:
    gen = torch.Generator().manual_seed(0)
    images, labels = load_split("mnist", "test")
    for x in (noise(16, gen), uniform_noise(16, gen), gaussian_noise(16, gen), scribbles(16, gen),
              blends(images[:16], labels[:16], gen)):
        assert x.dim() == 4 and x.shape[1:] == (1, 28, 28) and 0 <= float(x.min()) and float(x.max()) <= 1
    strokes = scribbles(64, gen, on_noise=0.0)
    assert float((strokes > 0.5).float().mean(dim=(1, 2, 3)).min()) > 0.01  # every scribble has ink
    assert float((scribbles(64, gen, on_noise=1.0) > 0.05).float().mean()) > float((strokes > 0.05).float().mean())


def test_an_abstaining_judge_says_cant_tell_with_its_last_output() -> None:
    judge = AbstainingJudge(ModelConfig()).eval()
    head = judge.head
    assert judge.abstains and head.out_features == 11
    with torch.no_grad():
        head.bias.copy_(torch.tensor([0.0] * 10 + [100.0]))
    assert decide(judge, torch.zeros(3, 1, 28, 28)).tolist() == [ABSTAIN] * 3
    with torch.no_grad():
        head.bias.copy_(torch.tensor([0.0] * 4 + [100.0] + [0.0] * 6))
    assert decide(judge, torch.zeros(2, 1, 28, 28)).tolist() == [4, 4]
