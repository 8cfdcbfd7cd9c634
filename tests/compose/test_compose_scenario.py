"""``DIFFSEM_SCENARIO=antennas COMPOSE_PROFILES=feature docker-compose up -d`` on a real engine (issue 22): the preset
reaches the emulator and the transmitter through their environment, and the stack shows the gap with no key.

A second compose stack costs about four minutes, so this is marked ``slow`` (outside the default suite, whose compose
test sets the same link through ``PUT /api/links``, test_07b). Run it by hand, after the default suite has built the
image::

    .venv/bin/python -m pytest -m slow tests/compose/test_compose_scenario.py

Thresholds as in tests/services/test_svc_antennas_scenario.py (docs/results/mnist-antennas: 97.4% against 28.9%).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from diffsem.data import default_data_dir
from tests.compose.engine import engine_or_skip
from tests.compose.stack import Stack, ensure_base_image, ensure_wheels, free_port, image_env, wait_until

pytestmark = pytest.mark.slow
PROJECT = "diffsemscenario"
PORTS = ("DIFFSEM_HTTP_PORT", "DIFFSEM_TRANSMITTER_PORT", "DIFFSEM_EMULATOR_PORT", "DIFFSEM_RECEIVER_PORT")
CORE = ("channel_emulator", "transmitter", "control_panel", "receiver")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with engine_or_skip() as engine:
        env = image_env() | {k: str(free_port()) for k in PORTS} | {
            "DIFFSEM_DATA_DIR": str(default_data_dir()), "DIFFSEM_LOG_FORMAT": "text",
            "DIFFSEM_SCENARIO": "antennas", "COMPOSE_PROFILES": "feature"}
        st = Stack(engine, PROJECT, env)
        st.compose("down", "-v", "--remove-orphans", check=False)
        try:
            ensure_base_image(engine)
            ensure_wheels()
            st.compose("build", timeout=1800)
            st.compose("up", "-d", timeout=900)
            wait_until("every core service and the eavesdropper healthy",
                       lambda: all(st.health(s) == "healthy" for s in (*CORE, "eve-feature")), 600, every=2)
            yield st
        finally:
            st.compose("down", "-v", "--remove-orphans", check=False)
            print("\n".join(["compose commands:", *st.log]))


def test_the_antennas_scenario_makes_the_gap_without_a_key_in_compose(stack: Stack) -> None:
    with stack.http() as c:
        wait_until("the receiver and the eavesdropper to attach",
                   lambda: all(c.get("/api/links").json()["links"].get(n, {}).get("attached")
                               for n in ("receiver", "eve-feature")), 180)
        links = c.get("/api/links").json()["links"]
    assert links["receiver"]["snr_db"] == 20.0
    assert links["receiver"]["antennas"] == {"n_tx": 4, "n_rx": 1, "null_space": True, "beam_fraction": 0.01,
                                            "estimator": "perfect", "feedback_delay": 0, "speed_kmh": 3.0,
                                            "channel_model": "rayleigh"}
    assert links["eve-feature"]["antennas"]["n_rx"] == 1
    run = stack.run_images(200)
    acc = {name: t["accuracy"] for name, t in run["listeners"].items()}
    print(f"antennas scenario in compose, 200 images: {acc}")
    assert run["listeners"]["receiver"]["lost"] == 0, run
    assert acc["receiver"] >= 0.90, acc      # offline 97.4%: it sees the beam
    assert acc["eve-feature"] <= 0.50, acc   # offline 28.9%: the null-space self-noise at full strength
