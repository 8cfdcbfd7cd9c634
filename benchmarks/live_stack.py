"""The live stack against the in-process pipeline: agreement, throughput, upload latency, 8-eavesdropper fan-out.

    .venv/bin/python benchmarks/live_stack.py [--checkpoints checkpoints/mnist] [--n 1000] [--mode selfref]
        [--snr-db 10] [--t-star 300] [--batch-size 500] [--uploads 100] [--fanout 8] [--fanout-n 2000]
        [--phy ofdm --channel-model TDL-A --delay-spread-ns 100 --speed-kmh 3 --feedback-delay 1]

One script run starts the stack with the local launcher (every port ephemeral) and measures:

1. **Agreement**: ``n`` MNIST test images through the stack, every generator seeded as ``diffsem eval``
   seeds it for (SNR, t*) (transmitter ``tx``, legitimate link ``legit``, eavesdropper ``eve0.0``), batches
   of ``batch_size`` as the evaluator's. Reported: live accuracy, the offline evaluator's accuracy
   (:func:`diffsem.evaluate.evaluate`) and per-image agreement with the evaluator's loop.
2. **Throughput**: that run's images/s (first send to last decision) against the in-process pipeline
   (encode, self-noise, channel, listener view, decode in the same mode, same batches) timed in this process.
3. **Latency**: p50/p99 of ``POST /api/transmit`` (one 28x28 PNG, label included) on the idle stack.
4. **Fan-out**: ``fanout`` eavesdroppers attached, a run of ``fanout_n`` images; drops per link.

``--phy ofdm`` starts the stack with ofdm links (the launcher's ``--phy`` options: every eavesdropper link, the
fan-out's too, draws its own TDL/CDL channel; the agreement run seeds each as the evaluator seeds it): the
transmitter then shapes self-noise per RE from the emulator's delayed feedback, and the offline side is the
evaluator with the same ``phy`` settings (``EvalConfig.phy``).

Prints a Markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the service packages, when run as a script

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from control_panel.client import wait_run  # noqa: E402
from diffsem.bundle import encode_all, load_bundle  # noqa: E402
from diffsem.config import result_key  # noqa: E402
from diffsem.data import load_split  # noqa: E402
from diffsem.defaults import checkpoint_dir  # noqa: E402
from diffsem.evaluate import EvalConfig, evaluate  # noqa: E402
from diffsem.framepath import LEGIT, TX, carry, condition_links, eve_role, send, view  # noqa: E402
from diffsem.receiver import DiffusionReceiver  # noqa: E402
from diffsem.seeds import derive_seed  # noqa: E402
from launcher.__main__ import add_phy_options, phy_options  # noqa: E402
from launcher.stack import EveSpec, Stack, StackConfig  # noqa: E402


def offline(bundle: Any, images: torch.Tensor, args: argparse.Namespace) -> tuple[list[int], list[int], float]:
    """The evaluator's loop for one (SNR, t*) with per-image decisions; returns (legit, eve, images/s)."""
    rx = DiffusionReceiver(bundle, steps=args.steps, classifier=args.classifier)
    links, gens = condition_links(bundle.cfg.k, args.seed, args.snr_db, args.t_star, [0.0], phy_options(args))
    link, eve_link = links[LEGIT], links[eve_role(0.0)]
    legit, eve, batches = [], [], []
    t0 = time.perf_counter()
    s_all = encode_all(bundle, images.to(bundle.device)).cpu()
    for i in range(0, len(images), args.batch_size):
        sent = send(s_all[i:i + args.batch_size], args.t_star, bundle.abar, {LEGIT: link}, gens)
        legit += rx.decode(sent.views[LEGIT].z, sent.views[LEGIT].abar_eff, args.mode).labels.tolist()
        batches.append(sent)
    rate = len(images) / (time.perf_counter() - t0)
    for sent in batches:  # the eavesdropper's own link and generator; not part of the timed pipeline
        v = view(carry(sent.x, eve_link, gens[eve_role(0.0)]), sent.header)
        with torch.no_grad():
            eve += bundle.eavesdropper(v.z.to(bundle.device), v.abar_eff.to(bundle.device)).argmax(1).cpu().tolist()
    return legit, eve, rate


def png(img: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((img[0].numpy() * 255).round().astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", type=Path, default=checkpoint_dir("mnist"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--mode", default="selfref")
    ap.add_argument("--classifier", default="matched", help="receiver classifier: matched or channel")
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--snr-db", type=float, default=10.0)
    ap.add_argument("--t-star", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--uploads", type=int, default=100)
    ap.add_argument("--fanout", type=int, default=8)
    ap.add_argument("--fanout-n", type=int, default=2000)
    ap.add_argument("--fanout-batch", type=int, default=100)
    ap.add_argument("--max-batch", type=int, default=64, help="receiver dynamic batching")
    add_phy_options(ap)  # the launcher's: the legitimate and eavesdropper links, live and offline alike
    ap.add_argument("--log-dir", type=Path, default=None)
    return ap.parse_args()


def agreement(c: httpx.Client, bundle: Any, images: torch.Tensor, labels: torch.Tensor,
              args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """1 + 2: a run seeded like `diffsem eval` against the evaluator and its loop; then (agreement, throughput)."""
    seeds = {r: derive_seed(args.seed, r, args.snr_db, args.t_star) for r in (TX, LEGIT, eve_role(0.0))}
    phy = phy_options(args)
    if phy:
        c.put("/api/links", json={"links": {"receiver": phy, "eve": phy}}).raise_for_status()
    # one image warms every service's first call (and Sionna's, ~4 s, on ofdm) before the seeded, timed run,
    # which reseeds every link and the transmitter
    c.post("/api/transmit", files={"file": ("x.png", png(images[0]), "image/png")}).raise_for_status()
    r = c.put("/api/links", json={"t_star": args.t_star, "tx_seed": seeds[TX], "links": {
        "receiver": {"snr_db": args.snr_db, "seed": seeds[LEGIT], **phy}, "eve": {"seed": seeds[eve_role(0.0)], **phy}}})
    r.raise_for_status()
    run = wait_run(c, c.post("/api/runs", json={"n": args.n, "batch_size": args.batch_size,
                                                  "window": 2 * args.batch_size}).json()["id"])
    dec = c.get(f"/api/runs/{run['id']}/decisions").json()
    live_legit, live_eve = dec["listeners"]["receiver"], dec["listeners"].get("eve", [])
    off_legit, off_eve, inproc_rate = offline(bundle, images, args)
    truth = labels.tolist()
    modes = ["direct"] if args.mode == "direct" else ["direct", args.mode]
    ev = evaluate(bundle, EvalConfig(n=args.n, snrs=[args.snr_db], t_stars=[args.t_star], eve_offsets=[0.0],
                                     modes=modes, classifiers=[args.classifier], steps=args.steps, seed=args.seed,
                                     batch_size=args.batch_size, default_t_star=args.t_star, phy=phy), images, labels)
    row = next(rw for rw in ev["rows"] if rw["t_star"] == args.t_star)
    acc = lambda xs: float(np.mean([a == t for a, t in zip(xs, truth, strict=True)]))  # noqa: E731
    same = lambda xs, ys: float(np.mean([a == b for a, b in zip(xs, ys, strict=True)]))  # noqa: E731
    agree = {"live_accuracy": run["accuracy"]["receiver"],
             "evaluator_accuracy": row["acc"][result_key(args.classifier, args.mode)],
             "replica_accuracy": acc(off_legit), "same_decisions": same(live_legit, off_legit),
             "eve_live_accuracy": acc(live_eve) if len(live_eve) == args.n and None not in live_eve else None,
             "eve_evaluator_accuracy": row["eve"]["0.0"],
             "eve_same_decisions": same(live_eve, off_eve) if len(live_eve) == args.n else None}
    return agree, {"live_images_per_s": run["images_per_s"], "inprocess_images_per_s": inproc_rate,
                   "ratio": run["images_per_s"] / inproc_rate, "retransmits": run["retransmits"]}


def upload_latency(c: httpx.Client, images: torch.Tensor, labels: torch.Tensor, uploads: int) -> dict[str, Any]:
    """3: p50/p99 of POST /api/transmit on the idle stack, in ms."""
    lat = []
    for i in range(uploads):
        data = png(images[i % len(images)])
        t = time.perf_counter()
        r = c.post("/api/transmit", files={"file": ("x.png", data, "image/png")},
                   data={"label": str(int(labels[i % len(images)]))})
        lat.append((time.perf_counter() - t) * 1000)
        r.raise_for_status()
    return {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)), "mean": float(np.mean(lat)),
            "n": len(lat)}


def fanout(c: httpx.Client, stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """4: ``args.fanout`` eavesdroppers attached, one run; drops per link."""
    for j in range(1, args.fanout):
        stack.add_eavesdropper(EveSpec(f"eve{j}", "feature-classifier", float(-j)), wait=False)
    for j in range(1, args.fanout):
        stack._wait(stack.services[f"eve{j}"])
    before = c.get("/api/summary").json()["links"]
    run8 = wait_run(c, c.post("/api/runs", json={"n": args.fanout_n, "batch_size": args.fanout_batch}).json()["id"])
    time.sleep(2.0)  # let the eavesdroppers' last reports land before reading the drop counters
    links = c.get("/api/summary").json()["links"]
    return {"eavesdroppers": sum(1 for lk in links.values() if lk["role"] == "eavesdropper" and lk["attached"]),
            "n": args.fanout_n, "images_per_s": run8["images_per_s"], "status": run8["status"],
            "legit_dropped": links["receiver"]["dropped_queue"] - before["receiver"]["dropped_queue"],
            "legit_decided": run8["decided"], "retransmits": run8["retransmits"],
            "eve_dropped": {k: v["dropped_queue"] for k, v in links.items() if v["role"] == "eavesdropper"}}


def print_table(results: dict[str, Any], args: argparse.Namespace) -> None:
    a, t, u = results["agreement"], results["throughput"], results["upload_latency_ms"]
    print(f"device {results['device']}, {results['threads']} torch threads, PHY {results['phy']}, mode {args.mode}, n={args.n}, "
          f"SNR {args.snr_db} dB, t*={args.t_star}, batch {args.batch_size}, stack startup {results['startup_s']} s")
    print("| measure | value |\n|---|---|")
    print(f"| live receiver accuracy | {a['live_accuracy']:.4f} |")
    print(f"| offline evaluator accuracy (diffsem.evaluate) | {a['evaluator_accuracy']:.4f} |")
    print(f"| same decisions as the evaluator's loop | {a['same_decisions']:.4f} |")
    print(f"| eavesdropper live / offline accuracy | {a['eve_live_accuracy']} / {a['eve_evaluator_accuracy']} |")
    print(f"| end-to-end images/s (live run) | {t['live_images_per_s']:.1f} |")
    print(f"| in-process pipeline images/s | {t['inprocess_images_per_s']:.1f} |")
    print(f"| live / in-process | {t['ratio']:.2f} |")
    print(f"| POST /api/transmit p50 / p99 ms | {u['p50']:.1f} / {u['p99']:.1f} |")
    if "fanout" in results:
        f = results["fanout"]
        print(f"| fan-out: {f['eavesdroppers']} eavesdroppers, {f['n']} images | legit drops {f['legit_dropped']}, "
              f"{f['images_per_s']:.1f} images/s, eavesdropper drops {sum(f['eve_dropped'].values())} |")
    print(json.dumps(results))


def main() -> None:
    args = _args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    bundle = load_bundle(args.checkpoints, device=args.device)
    images, labels = load_split(bundle.cfg.dataset, "test")
    images, labels = images[:args.n], labels[:args.n]
    results: dict[str, Any] = {"n": args.n, "phy": phy_options(args) or {"phy": "flat"}, "mode": args.mode,
                               "classifier": args.classifier, "snr_db": args.snr_db,
                               "t_star": args.t_star, "batch_size": args.batch_size, "model_id": bundle.model_id,
                               "device": str(bundle.device), "host": platform.machine(),
                               "threads": torch.get_num_threads()}
    cfg = StackConfig.ephemeral(checkpoints=args.checkpoints, device=args.device, mode=args.mode,
                                classifier=args.classifier, steps=args.steps, snr_db=args.snr_db, t_star=args.t_star,
                                seed=args.seed, max_batch=args.max_batch, phy=phy_options(args),
                                eavesdroppers=[EveSpec("eve", "feature-classifier", 0.0)], log_dir=args.log_dir)
    t0 = time.monotonic()
    with Stack(cfg) as stack, httpx.Client(base_url=stack.http_url, timeout=120) as c:
        results["startup_s"] = round(time.monotonic() - t0, 1)
        results["agreement"], results["throughput"] = agreement(c, bundle, images, labels, args)
        results["upload_latency_ms"] = upload_latency(c, images, labels, args.uploads)
        if args.fanout:
            results["fanout"] = fanout(c, stack, args)
    print_table(results, args)


if __name__ == "__main__":
    main()
