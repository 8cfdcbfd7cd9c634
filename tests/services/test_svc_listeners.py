"""256 listeners on one emulator: an idle or never-reading stream costs no thread and the eavesdroppers' channels are
drawn in the emulator's fan-out worker process, so the legitimate link keeps its rate and loses nothing, and health
answers within a second. The emulator is its own process; the curve up to 640 frames/s offered is
``benchmarks/listeners.py --curve`` (BENCHMARKS.md, "256 listeners on one emulator")."""

from __future__ import annotations

from benchmarks.listeners import measure_phases

# 160 frames/s offered, 5 s a phase. Each pair is one emulator: 0 extra listeners, then 256 (8 reading every frame,
# 248 never reading a byte); two pairs, and the ratio of their summed rates, so a stall of the shared machine in one
# phase moves the ratio by a few percent, not by its whole length.
BATCHES, BATCH, INTERVAL_MS, PAIRS = 100, 8, 50.0, 2


def test_256_listeners_some_never_reading_leave_the_legitimate_link_alone() -> None:
    pairs = [measure_phases([(0, 0), (256, 8)], BATCHES, BATCH, INTERVAL_MS) for _ in range(PAIRS)]
    base = sum(p[0].legit_rate_fps for p in pairs)
    many = sum(p[1].legit_rate_fps for p in pairs)
    print(f"legitimate rate {many / PAIRS:.0f} vs {base / PAIRS:.0f} frames/s (ratio {many / base:.3f}), "
          f"health max {max(p[1].health_max_ms for p in pairs):.1f} ms")
    for base_phase, many_phase in pairs:
        for r in (base_phase, many_phase):
            assert r.legit_lost == 0 and r.legit_received == r.sent == BATCHES * BATCH, r
        assert many_phase.health_max_ms < 1000.0, many_phase
    assert many >= 0.9 * base, pairs
