"""The noise-replay attack against the live stack (issue 19, item 2): a stack with self-noise from the OS (the default)
against one started with ``--seed 0``, each with the plain inversion decoder and the noise-replay attack listening
side by side at the legitimate SNR.

    .venv/bin/python benchmarks/noise_replay.py [--n 1000] [--snr-db 20] [--t-stars 300,700] [--out FILE]

For each stack and each t*: one run of ``--n`` MNIST test images (``POST /api/runs``); per listener, its accuracy
(an inversion attack's is the max over its judges, docs/design.md §4) and spread; for the replay attack, the frames it
matched and the mean privacy level of the frames as received and after it removed what it matched (from its
``Info.details``, read before and after the run). The two eavesdroppers each have their own link (own noise), at the
same SNR. Prints a Markdown table and one JSON line (``--out`` writes the JSON too).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from control_panel.client import wait_run  # noqa: E402
from launcher.stack import EveSpec, Stack, StackConfig  # noqa: E402
from protos.diffsem.v1 import common_pb2, eavesdropper_pb2_grpc  # noqa: E402
from services_common import auth  # noqa: E402
from services_common.client import grpc_channel  # noqa: E402

PLAIN, REPLAY = "inversion", "replay"


def details(stack: Stack) -> dict[str, str]:
    """The replay eavesdropper's ``Info.details``, asked as the panel would (the control credential)."""
    with grpc_channel(stack.address(REPLAY), auth.issue(stack.key, auth.CONTROL, auth.CONTROL),
                 auth.eavesdropper_audience(REPLAY)) as ch:
        return dict(eavesdropper_pb2_grpc.EavesdropperStub(ch).Info(common_pb2.InfoRequest(), timeout=30).details)


def measure(seed: int | None, args: argparse.Namespace) -> list[dict[str, Any]]:
    cfg = StackConfig.ephemeral(snr_db=args.snr_db, seed=seed, receiver_threads=1, eavesdroppers=[
        EveSpec(PLAIN, "inversion-decoder", 0.0), EveSpec(REPLAY, "noise-replay", 0.0)])
    rows = []
    with Stack(cfg) as stack, httpx.Client(base_url=stack.http_url, timeout=60) as c:
        for t_star in args.t_stars:
            assert c.put("/api/links", json={"t_star": t_star}).status_code == 200
            before = details(stack)
            t0 = time.perf_counter()
            run = wait_run(c, c.post("/api/runs", json={"n": args.n, "batch_size": 100}).json()["id"], timeout=3600)
            after = details(stack)
            assert run["status"] == "done", run
            frames = int(after["replay_frames"]) - int(before["replay_frames"])
            listeners = run["listeners"]
            rows.append({
                "stack": "default (OS seeds)" if seed is None else f"--seed {seed}", "t_star": t_star,
                "n": args.n, "seeded": run["seeded"], "receiver": listeners["receiver"]["accuracy"],
                PLAIN: listeners[PLAIN]["accuracy"], REPLAY: listeners[REPLAY]["accuracy"],
                f"{PLAIN}_spread": listeners[PLAIN].get("judged_spread"),
                f"{REPLAY}_spread": listeners[REPLAY].get("judged_spread"),
                "replay_matched": int(after["replay_matched"]) - int(before["replay_matched"]),
                "replay_frames": frames,
                "level_received": (float(after["replay_level_in_sum"]) - float(before["replay_level_in_sum"])) / frames,
                "level_after_replay": (float(after["replay_level_out_sum"])
                                       - float(before["replay_level_out_sum"])) / frames,
                "seconds": round(time.perf_counter() - t0, 1)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--snr-db", type=float, default=20.0)
    p.add_argument("--t-stars", type=lambda s: [int(t) for t in s.split(",")], default=[300, 700])
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    rows = measure(None, args) + measure(0, args)
    print("| stack | t* | receiver % | inversion decoder % (level) | noise replay % (level after) | frames matched |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['stack']} | {r['t_star']} | {100 * r['receiver']:.1f} | {100 * r[PLAIN]:.1f} "
              f"({r['level_received']:.3f}) | {100 * r[REPLAY]:.1f} ({r['level_after_replay']:.3f}) | "
              f"{r['replay_matched']} / {r['replay_frames']} |")
    out = {"rows": rows, "snr_db": args.snr_db, "host": platform.node()}
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
