"""``PanelState``: everything the routes share (store, ledger, runs, sweeps, human judging, upstream clients), and
its lifecycle.

Routes receive it through FastAPI's ``Depends`` (``control_panel.deps.Panel``); the app's lifespan calls
:meth:`PanelState.start` and :meth:`PanelState.stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from control_panel.errors import Upstream
from control_panel.judging import HumanJudging
from control_panel.ledger import Ledger
from control_panel.links import link_json
from control_panel.metrics import PanelMetrics
from control_panel.runs import RunManager
from control_panel.settings import PanelSettings
from control_panel.store import Store
from control_panel.sweeps import SweepManager
from control_panel.telemetry import MAX_CONCURRENT_CALLS, TelemetryServicer
from protos.diffsem.v1 import channel_emulator_pb2 as ch_pb
from protos.diffsem.v1 import channel_emulator_pb2_grpc as ch_grpc
from protos.diffsem.v1 import common_pb2, transmitter_pb2_grpc
from services_common.auth import TELEMETRY_AUDIENCE, Verifier
from services_common.client import SHORT_DEADLINE_S, grpc_aio_channel
from services_common.door import Door, rules_of
from services_common.server import SERVING, add_health_and_reflection_aio, aio_server

log = logging.getLogger(__name__)
TELEMETRY = TelemetryServicer.SERVICE_NAME


class PanelState:
    """The panel's shared state. ``tx``, ``emu``, ``runs`` and ``sweeps`` exist once :meth:`start` has run."""

    def __init__(self, settings: PanelSettings):
        self.settings = settings
        self.store = Store(settings.db)
        self.ledger = Ledger(self.store, settings.legit)
        self.judging = HumanJudging(self.store, settings.judging_pools)
        self.last_links: dict[str, dict[str, Any]] = {}
        self.metrics = PanelMetrics(self.ledger, lambda: self.last_links)
        self.telemetry_port = 0
        self.tx: Upstream
        self.emu: Upstream
        self.runs: RunManager
        self.sweeps: SweepManager
        self._closers: list[Any] = []

    async def start(self) -> None:
        s = self.settings
        telemetry = TelemetryServicer(self.ledger, Verifier(s.auth_key, audience=TELEMETRY_AUDIENCE))
        server = aio_server(Door(telemetry.verifier, rules_of(telemetry)), telemetry.max_request_bytes,
                            maximum_concurrent_rpcs=MAX_CONCURRENT_CALLS,
                            extra_options=[("grpc.max_concurrent_streams", MAX_CONCURRENT_CALLS)])
        telemetry.register(server)
        health = add_health_and_reflection_aio(server, [TELEMETRY])
        self.telemetry_port = server.add_insecure_port(f"{s.telemetry_host}:{s.telemetry_port}")
        await server.start()
        for name in ("", TELEMETRY):
            await health.set(name, SERVING)
        tx_channel = grpc_aio_channel(s.transmitter, s.credential)
        emu_channel = grpc_aio_channel(s.emulator, s.credential)
        self.tx = Upstream("transmitter", transmitter_pb2_grpc.TransmitterStub(tx_channel))
        self.emu = Upstream("channel emulator", ch_grpc.ChannelEmulatorStub(emu_channel))
        self.runs = RunManager(self.store, self.ledger, self.tx, self.attached, s.max_runs, self.seeded_by)
        self.sweeps = SweepManager(self.store, self.ledger, self.runs, self.tx)
        pruner = asyncio.create_task(self._prune_forever())
        self._closers = [health.enter_graceful_shutdown, pruner.cancel, self.sweeps.stop, self.runs.stop,
                         lambda: server.stop(2.0), tx_channel.close, emu_channel.close]
        log.info("telemetry gRPC on %s:%d; transmitter %s, emulator %s; database %s (%d runs marked interrupted)",
                 s.telemetry_host, self.telemetry_port, s.transmitter, s.emulator, s.db, self.runs.interrupted)

    async def stop(self) -> None:
        for close in self._closers:
            result = close()
            if asyncio.iscoroutine(result):
                await result
        await asyncio.sleep(0)  # let the cancelled runs record their status
        self.store.close()

    async def _prune_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.prune_every_s)
            with contextlib.suppress(Exception):  # a failed prune is retried at the next period
                pruned = self.store.prune_messages(self.settings.retention_messages)
                if pruned:
                    log.info("retention: pruned %d old messages", pruned)

    async def link_states(self) -> ch_pb.ChannelState:
        """The emulator's links (kept in ``last_links`` for the metrics)."""
        state = await self.emu.call("GetState", ch_pb.GetStateRequest(), SHORT_DEADLINE_S)
        self.last_links = {lk.name: link_json(lk) for lk in state.links}
        return state

    async def attached(self) -> set[str]:
        """Names of the listeners attached to the emulator now."""
        return {lk.name for lk in (await self.link_states()).links if lk.attached}

    async def seeded_by(self) -> list[str]:
        """What draws its noise from an explicit seed now, so that anyone who knows the seed can replay it: the
        transmitter's self-noise (``transmitter``) and each seeded link by name; [] when all of it is from the OS."""
        tx = await self.tx.call("GetState", common_pb2.InfoRequest(), SHORT_DEADLINE_S)
        links = (await self.link_states()).links
        return (["transmitter"] if tx.seeded else []) + [lk.name for lk in links if lk.seeded]
