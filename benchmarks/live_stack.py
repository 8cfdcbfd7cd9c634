"""The live stack against the in-process pipeline: agreement on every PHY and for every listener, throughput, upload
latency, 8-eavesdropper fan-out.

    .venv/bin/python benchmarks/live_stack.py [--checkpoints checkpoints/mnist] [--n 1000] [--mode selfref]
        [--snr-db 10] [--t-star 300] [--batch-size 500] [--uploads 100] [--fanout 8] [--fanout-n 2000]
        [--conditions flat-awgn,flat-rayleigh,flat-rayleigh-blocks-of-8,ofdm-tdl-a-ls]

One script run starts the stack with the local launcher (every port ephemeral), with two eavesdroppers: ``eve``
(feature-classifier, equal SNR) and ``inv`` (inversion-decoder, 5 dB worse, labelled by the full panel of judges),
and measures:

1. **Agreement**, per condition (:data:`diffsem.decisions.CONDITIONS`: flat AWGN, flat Rayleigh with a new fade
   every frame and in blocks of 8 frames, ofdm TDL-A with LS estimation): ``n`` MNIST test images through the stack,
   every link and the transmitter seeded as ``diffsem eval`` seeds them for (SNR, t*), batches of ``batch_size``.
   Reported per listener: the share of images whose live decision (eavesdroppers: label, or first judge's label) is
   the offline frame path's (:func:`diffsem.decisions.decisions`), both accuracies, and ``inv``'s accuracy per
   judge, live and offline.
2. **Throughput**: the first condition's run, images/s (first send to last decision), against the in-process
   pipeline (encode, self-noise, channel, listener view, decode in the same mode, same batches) timed in this
   process.
3. **Latency**: p50/p99 of ``POST /api/transmit`` (one 28x28 PNG, label included) on the idle stack.
4. **Fan-out**: ``fanout`` eavesdroppers attached, a run of ``fanout_n`` images; drops per link.

Prints a Markdown table and one JSON line.

``--pairs N`` measures throughput alone, as issue 20 asks: one eavesdropper (``eve``), one stack per ``--max-batch``
value (comma-separated; the stacks run side by side, idle but for the run in flight), and N repetitions, each a
seeded run of ``n`` images on every stack and the in-process pipeline, alternating; prints each stack's live /
in-process ratio per repetition and their medians, against the in-process receiver alone (the issue's baseline) and
against the in-process receiver plus the same eavesdropper's link and attack (the same work as the stack's)::

    .venv/bin/python benchmarks/live_stack.py --n 1000 --pairs 3 --max-batch 64,512
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
from diffsem.attacks import load_attack  # noqa: E402
from diffsem.bundle import encode_all, load_bundle  # noqa: E402
from diffsem.data import load_split  # noqa: E402
from diffsem.decisions import CONDITIONS, Eavesdropper, decisions  # noqa: E402
from diffsem.defaults import checkpoint_dir  # noqa: E402
from diffsem.framepath import LEGIT, TX, condition_links, eve_role, send  # noqa: E402
from diffsem.receiver import DiffusionReceiver  # noqa: E402
from diffsem.seeds import derive_seed  # noqa: E402
from launcher.stack import EveSpec, Stack, StackConfig  # noqa: E402

EAVESDROPPERS = {"eve": Eavesdropper("feature-classifier", 0.0), "inv": Eavesdropper("inversion-decoder", -5.0)}
LISTENERS = ("receiver", *EAVESDROPPERS)


def inprocess_rate(bundle: Any, images: torch.Tensor, settings: dict[str, Any], args: argparse.Namespace,
                   eve: Any = None) -> float:
    """Images/s of the in-process pipeline: encode, self-noise, channel, view, decode for the receiver alone or, with
    ``eve`` (an attack), also the equal-SNR eavesdropper's link and that attack on its view: the live stack's work
    with ``--pairs``' one eavesdropper, done in one process."""
    rx = DiffusionReceiver(bundle, steps=args.steps, classifier=args.classifier)
    links, gens = condition_links(bundle.cfg.k, args.seed, args.snr_db, args.t_star, [] if eve is None else [0.0],
                                  settings)
    t0 = time.perf_counter()
    s_all = encode_all(bundle, images.to(bundle.device)).cpu()
    for i in range(0, len(images), args.batch_size):
        sent = send(s_all[i:i + args.batch_size], args.t_star, bundle.abar, links, gens)
        rx.decode(sent.views[LEGIT].z, sent.views[LEGIT].abar_eff, args.mode)
        if eve is not None:
            view = sent.views[eve_role(0.0)]
            eve.attack(view.z, view.abar_eff, sent.header)
    return len(images) / (time.perf_counter() - t0)


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
    ap.add_argument("--max-batch", type=lambda t: [int(v) for v in t.split(",")], default=[64],
                    help="receiver dynamic batching (--pairs: comma-separated, one stack each)")
    ap.add_argument("--pairs", type=int, default=0, help="throughput alone: repetitions (see the docstring)")
    ap.add_argument("--conditions", type=lambda t: [v for v in t.split(",") if v], default=list(CONDITIONS),
                    help=f"comma-separated, of {', '.join(CONDITIONS)} (default: all)")
    ap.add_argument("--log-dir", type=Path, default=None)
    return ap.parse_args()


def share(xs: list[int], ys: list[int]) -> float:
    """The fraction of positions where the two lists agree."""
    return float(np.mean([a == b for a, b in zip(xs, ys, strict=True)]))


def live_run(c: httpx.Client, settings: dict[str, Any], args: argparse.Namespace,
             listeners: tuple[str, ...] = LISTENERS) -> tuple[dict[str, Any], dict]:
    """One seeded run of ``n`` images on ``settings``, every listener's reports in: (the run, its decisions)."""
    seeds = {r: derive_seed(args.seed, r, args.snr_db, args.t_star) for r in (TX, LEGIT)}
    links = {"receiver": {"snr_db": args.snr_db, "seed": seeds[LEGIT], **settings}}
    links |= {name: {"snr_offset_db": e.offset_db, "seed": derive_seed(args.seed, eve_role(e.offset_db), args.snr_db,
                                                                       args.t_star), **settings}
              for name, e in EAVESDROPPERS.items() if name in listeners}
    c.put("/api/links", json={"t_star": args.t_star, "tx_seed": seeds[TX], "links": links}).raise_for_status()
    run_id = c.post("/api/runs", json={"n": args.n, "batch_size": args.batch_size, "window": 2 * args.batch_size}).json()["id"]
    run = wait_run(c, run_id)
    while any(run["listeners"][n]["reports"] < args.n for n in listeners):  # the eavesdroppers may lag a little
        time.sleep(0.5)
        run = c.get(f"/api/runs/{run_id}").json()
    return run, c.get(f"/api/runs/{run_id}/decisions").json()


def agreement(c: httpx.Client, bundle: Any, images: torch.Tensor, args: argparse.Namespace
              ) -> tuple[dict[str, Any], dict[str, Any]]:
    """1 + 2: every condition's live run against the offline decisions; the first one's throughput."""
    # one image warms every service's first call (and Sionna's, ~4 s, on ofdm) before the seeded, timed runs
    c.post("/api/transmit", files={"file": ("x.png", png(images[0]), "image/png")}).raise_for_status()
    out, throughput = {}, {}
    for name in args.conditions:
        settings = CONDITIONS[name]
        run, live = live_run(c, settings, args)
        off = decisions(bundle, images, args.snr_db, args.t_star, args.seed, settings, EAVESDROPPERS, args.checkpoints,
                        args.batch_size, mode=args.mode, steps=args.steps, classifier=args.classifier)
        truth = live["truth"]
        out[name] = {n: {"same_decisions": share(live["listeners"][n], off.labels[n]),
                         "live_accuracy": share(live["listeners"][n], truth),
                         "offline_accuracy": share(off.labels[n], truth)} for n in LISTENERS}
        out[name]["inv"]["judges"] = {j: {"live": run["listeners"]["inv"]["judges"].get(j),
                                          "offline": share(labels, truth)} for j, labels in off.judged["inv"].items()}
        if not throughput:
            rate = inprocess_rate(bundle, images, settings, args)
            throughput = {"condition": name, "live_images_per_s": run["images_per_s"], "inprocess_images_per_s": rate,
                          "ratio": run["images_per_s"] / rate, "retransmits": run["retransmits"]}
    c.put("/api/links", json={"links": {n: CONDITIONS["flat-awgn"] for n in LISTENERS}}).raise_for_status()
    return out, throughput


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
    """4: ``args.fanout`` eavesdroppers attached (``eve``, ``inv`` and more), one run; drops per link."""
    more = range(len(EAVESDROPPERS), args.fanout)
    for j in more:
        stack.add_eavesdropper(EveSpec(f"eve{j}", "feature-classifier", float(-j)), wait=False)
    for j in more:
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
    print(f"device {results['device']}, {results['threads']} torch threads, mode {args.mode}, n={args.n}, "
          f"SNR {args.snr_db} dB, t*={args.t_star}, batch {args.batch_size}, stack startup {results['startup_s']} s")
    print("| condition | listener | same decisions as offline | accuracy live / offline |\n|---|---|---|---|")
    for name, per in a.items():
        for listener in LISTENERS:
            r = per[listener]
            print(f"| {name} | {listener} | {r['same_decisions']:.4f} | {r['live_accuracy']:.4f} / "
                  f"{r['offline_accuracy']:.4f} |")
        judges = ", ".join(f"{j} {v['live']:.4f} / {v['offline']:.4f}" for j, v in per["inv"]["judges"].items())
        print(f"| {name} | inv, per judge | | {judges} |")
    print("\n| measure | value |\n|---|---|")
    print(f"| end-to-end images/s (live run, {t['condition']}) | {t['live_images_per_s']:.1f} |")
    print(f"| in-process pipeline images/s | {t['inprocess_images_per_s']:.1f} |")
    print(f"| live / in-process | {t['ratio']:.2f} |")
    print(f"| POST /api/transmit p50 / p99 ms | {u['p50']:.1f} / {u['p99']:.1f} |")
    if "fanout" in results:
        f = results["fanout"]
        print(f"| fan-out: {f['eavesdroppers']} eavesdroppers, {f['n']} images | legit drops {f['legit_dropped']}, "
              f"{f['images_per_s']:.1f} images/s, eavesdropper drops {sum(f['eve_dropped'].values())} |")
    print(json.dumps(results))


def throughput_pairs(bundle: Any, images: torch.Tensor, args: argparse.Namespace) -> None:
    """``--pairs``: live / in-process throughput, one stack per ``--max-batch`` value, one eavesdropper."""
    settings = CONDITIONS[args.conditions[0]]
    stacks = [Stack(StackConfig.ephemeral(checkpoints=args.checkpoints, device=args.device, mode=args.mode,
                                          classifier=args.classifier, steps=args.steps, snr_db=args.snr_db,
                                          t_star=args.t_star, seed=args.seed, max_batch=mb,
                                          eavesdroppers=[EveSpec("eve", EAVESDROPPERS["eve"].attack, 0.0)]))
              for mb in args.max_batch]
    ratios: dict[int, list[float]] = {mb: [] for mb in args.max_batch}
    with_eve: dict[int, list[float]] = {mb: [] for mb in args.max_batch}  # against the in-process receiver + eve
    attack = load_attack(EAVESDROPPERS["eve"].attack, bundle, checkpoint_root=args.checkpoints)
    try:
        clients = []
        for stack in stacks:
            stack.start()
            clients.append(c := httpx.Client(base_url=stack.http_url, timeout=120))
            c.post("/api/transmit", files={"file": ("x.png", png(images[0]), "image/png")}).raise_for_status()
        inprocess_rate(bundle, images[:args.batch_size], settings, args, attack)  # warm-up, as the stacks' image
        for rep in range(args.pairs):
            rate = inprocess_rate(bundle, images, settings, args)
            rate_eve = inprocess_rate(bundle, images, settings, args, attack)
            for mb, c in zip(args.max_batch, clients, strict=True):
                run, _ = live_run(c, settings, args, ("receiver", "eve"))
                ratios[mb].append(run["images_per_s"] / rate)
                with_eve[mb].append(run["images_per_s"] / rate_eve)
                print(f"repetition {rep + 1}: max_batch {mb}: live {run['images_per_s']:.1f} images/s, in-process "
                      f"{rate:.1f} (receiver alone) / {rate_eve:.1f} (receiver + eve), ratios {ratios[mb][-1]:.3f} / "
                      f"{with_eve[mb][-1]:.3f}", flush=True)
    finally:
        for stack in stacks:
            stack.stop()
    for mb, rs in ratios.items():
        print(f"max_batch {mb}: live / in-process {', '.join(f'{r:.3f}' for r in rs)}, median {np.median(rs):.3f}; "
              f"against receiver + eve {', '.join(f'{r:.3f}' for r in with_eve[mb])}, "
              f"median {np.median(with_eve[mb]):.3f}")
    print(json.dumps({"n": args.n, "condition": args.conditions[0], "ratios": ratios, "ratios_with_eve": with_eve}))


def main() -> None:
    args = _args()
    if unknown := sorted(set(args.conditions) - set(CONDITIONS)):
        sys.exit(f"live_stack.py: unknown conditions {unknown}; use {', '.join(CONDITIONS)}")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    bundle = load_bundle(args.checkpoints, device=args.device)
    images, labels = load_split(bundle.cfg.dataset, "test")
    images, labels = images[:args.n], labels[:args.n]
    if args.pairs:
        return throughput_pairs(bundle, images, args)
    results: dict[str, Any] = {"n": args.n, "conditions": {n: CONDITIONS[n] for n in args.conditions},
                               "mode": args.mode, "classifier": args.classifier, "snr_db": args.snr_db,
                               "t_star": args.t_star, "batch_size": args.batch_size, "model_id": bundle.model_id,
                               "device": str(bundle.device), "host": platform.machine(),
                               "threads": torch.get_num_threads()}
    eves = [EveSpec(name, e.attack, e.offset_db) for name, e in EAVESDROPPERS.items()]
    cfg = StackConfig.ephemeral(checkpoints=args.checkpoints, device=args.device, mode=args.mode,
                                classifier=args.classifier, steps=args.steps, snr_db=args.snr_db, t_star=args.t_star,
                                seed=args.seed, max_batch=args.max_batch[0], eavesdroppers=eves, log_dir=args.log_dir)
    t0 = time.monotonic()
    with Stack(cfg) as stack, httpx.Client(base_url=stack.http_url, timeout=120) as c:
        results["startup_s"] = round(time.monotonic() - t0, 1)
        results["agreement"], results["throughput"] = agreement(c, bundle, images, args)
        results["upload_latency_ms"] = upload_latency(c, images, labels, args.uploads)
        if args.fanout:
            results["fanout"] = fanout(c, stack, args)
    print_table(results, args)


if __name__ == "__main__":
    main()
