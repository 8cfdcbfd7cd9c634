"""Where the live stack's CPU goes (issue 20): CPU seconds of every service process during one seeded run of ``n``
images with one eavesdropper, against the model work alone (encode and decode of the same images in this process,
one torch thread), and the throughput bound that follows on this machine's cores.

    .venv/bin/python benchmarks/live_cpu.py [--n 1000] [--batch-size 500] [--max-batch 64] [--repeats 2]
        [--receiver-threads N]

Each service's CPU is read from /proc (its process and its children, e.g. the emulator's fan-out worker) before and
after the run. The bound: the stack cannot carry more than cores / (CPU seconds per image, all services) images per
second however well its processes overlap; the in-process pipeline does the model work alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the service packages, when run as a script

import httpx  # noqa: E402
import torch  # noqa: E402
from live_stack import EAVESDROPPERS, live_run, png  # noqa: E402  (this folder)

from diffsem.bundle import encode_all, load_bundle  # noqa: E402
from diffsem.data import load_split  # noqa: E402
from diffsem.decisions import CONDITIONS  # noqa: E402
from diffsem.defaults import checkpoint_dir  # noqa: E402
from diffsem.framepath import LEGIT, condition_links, send  # noqa: E402
from diffsem.receiver import DiffusionReceiver  # noqa: E402
from launcher.stack import EveSpec, Stack, StackConfig  # noqa: E402


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and, recursively, its children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return own + sum(cpu_s(int(c)) for c in children)


def model_work(images: torch.Tensor, args: argparse.Namespace) -> dict[str, float]:
    """CPU seconds of the encoder and of the receiver's decode (``args.mode``, batches of ``max_batch``) for
    ``images``, one torch thread, in this process."""
    torch.set_num_threads(1)
    bundle = load_bundle(args.checkpoints, device="cpu")
    rx = DiffusionReceiver(bundle, steps=1, classifier="matched")

    def timed(f) -> float:  # noqa: ANN001
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        f()
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        return r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime

    s = encode_all(bundle, images).cpu()
    links, gens = condition_links(bundle.cfg.k, args.seed, args.snr_db, args.t_star, [], CONDITIONS["flat-awgn"])
    view = send(s, args.t_star, bundle.abar, links, gens).views[LEGIT]
    encode = timed(lambda: encode_all(bundle, images))
    decode = timed(lambda: [rx.decode(view.z[i:i + args.max_batch], view.abar_eff[i:i + args.max_batch], args.mode)
                            for i in range(0, len(images), args.max_batch)])
    return {"encode": encode, "decode": decode}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", type=Path, default=checkpoint_dir("mnist"))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--mode", default="selfref")
    ap.add_argument("--snr-db", type=float, default=10.0)
    ap.add_argument("--t-star", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--receiver-threads", type=int, default=None, help="the receiver's torch threads (default: "
                    "torch's choice, as the launcher leaves it)")
    args = ap.parse_args()
    images = load_split("mnist", "test")[0][:args.n]
    cores = os.cpu_count() or 1
    stack = Stack(StackConfig.ephemeral(checkpoints=args.checkpoints, mode=args.mode, snr_db=args.snr_db,
                                        t_star=args.t_star, seed=args.seed, max_batch=args.max_batch,
                                        receiver_threads=args.receiver_threads,
                                        eavesdroppers=[EveSpec("eve", EAVESDROPPERS["eve"].attack, 0.0)]))
    runs = []
    stack.start()
    try:
        c = httpx.Client(base_url=stack.http_url, timeout=120)
        c.post("/api/transmit", files={"file": ("x.png", png(images[0]), "image/png")}).raise_for_status()
        pids = {name: s.proc.pid for name, s in stack.services.items() if s.proc}
        for _ in range(args.repeats):
            before = {name: cpu_s(pid) for name, pid in pids.items()}
            run, _ = live_run(c, CONDITIONS["flat-awgn"], args, ("receiver", "eve"))
            runs.append({"images_per_s": run["images_per_s"],
                         "cpu_s": {name: round(cpu_s(pid) - before[name], 2) for name, pid in pids.items()}})
    finally:
        stack.stop()
    work = model_work(images, args)
    for r in runs:
        total = sum(r["cpu_s"].values())
        r["bound_images_per_s"] = round(cores * args.n / total, 1)
        print(f"live {r['images_per_s']:.1f} images/s; CPU s per service: {r['cpu_s']}; total {total:.2f} s, "
              f"so at most {r['bound_images_per_s']} images/s on {cores} cores")
    print(f"model work alone (one thread): encode {work['encode']:.2f} s + decode {work['decode']:.2f} s for {args.n} "
          f"images, so at most {cores * args.n / sum(work.values()):.1f} images/s on {cores} cores")
    print(json.dumps({"n": args.n, "batch_size": args.batch_size, "max_batch": args.max_batch, "cores": cores,
                      "receiver_threads": args.receiver_threads,
                      "runs": runs, "model_work_cpu_s": work}))


if __name__ == "__main__":
    main()
