"""How fast the "Judge it yourself" page moves on: per-item latency from a key press to the next image on screen.

    .venv/bin/python benchmarks/judging_page.py [--items 100] [--pool DIR/NAME]

A real panel process (``python -m control_panel``, its upstreams stood in by ``tests/services/panel_fakes.py``; the
page needs none of them) serves a set of ``--items`` items (reconstructions plus a tenth of attention checks) from
the test pool (``tests/services/judging_pool.py``: MNIST test images and made-up judges), or from a given pool file.
Debian's chromium (playwright, ``--no-sandbox``) answers every item by keyboard as soon as it is shown, with a
scripted key (these are not human answers). Each item's latency is measured in the page, from the ``keydown`` event
(capture phase) to the ``load`` event of the next item's image, which the page sets only after the stored answer
came back with the next item. A person needs about 3 s per item for 100 items in 5 minutes; the page's share of
that is the latency reported. Prints a Markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "services")]  # the packages and the panel's test stand-ins

from judging_pool import POOL, make_pool  # noqa: E402
from panel_fakes import start_panel  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100)
    ap.add_argument("--pool", type=Path, default=None, help="a pool's .npz (default: the test pool, made here)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    checks = max(args.items // 10, 1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.pool is None:
            make_pool(folder / "pools", n=args.items - checks, checks=checks)
            pools, name = folder / "pools", POOL
        else:
            pools, name = args.pool.parent, args.pool.stem
        panel = start_panel(folder, "--judging-pools", str(pools))
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page()
                page.goto(panel.url + "/judge")
                page.evaluate("document.addEventListener('keydown', () => { window.__keyAt = performance.now(); }, true)")
                page.wait_for_selector(f"#pool option[value='{name}']", state="attached")
                page.fill("#new input[name=n]", str(args.items - checks))
                page.fill("#new input[name=checks]", str(checks))
                page.click("#start-btn")
                latencies = []
                start = time.perf_counter()
                for shown in range(args.items):
                    page.wait_for_function(f"document.querySelector('#item').dataset.item === '{shown}'")
                    if shown:
                        latencies.append(page.evaluate("window.__shownAt - window.__keyAt"))
                    page.keyboard.press("x" if shown % 5 == 4 else str(shown % 10))
                page.wait_for_selector("#human-acc")
                wall = time.perf_counter() - start
                browser.close()
        finally:
            panel.close()
    lat = sorted(latencies)
    out = {"items": args.items, "answered_by_script_s": round(wall, 2), "latency_ms_p50": round(statistics.median(lat), 1),
           "latency_ms_p95": round(lat[int(0.95 * (len(lat) - 1))], 1), "latency_ms_max": round(lat[-1], 1),
           "latency_ms_mean": round(statistics.fmean(lat), 1), "machine": f"{platform.machine()}, {platform.node()}"}
    print("| items | script's wall time | per-item latency p50 / p95 / max |")
    print("|---|---|---|")
    print(f"| {args.items} | {out['answered_by_script_s']} s | {out['latency_ms_p50']} / {out['latency_ms_p95']} / "
          f"{out['latency_ms_max']} ms |")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
