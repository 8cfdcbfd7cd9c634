"""What every service's servicer shares: callers verified by role, and a model that arrives after the port is bound.

A service binds its port first and loads its model afterwards (``services_common.server.serve``); until
:meth:`ModelServicer.ready` hands the model over, every RPC answers UNAVAILABLE (``NotReady``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import grpc

from services_common import auth
from services_common.errors import NotReady

if TYPE_CHECKING:
    from services_common.listener import ListenerLoop

M = TypeVar("M")


class ModelServicer(Generic[M]):
    """Mixed in before a generated ``...Servicer`` base. Subclasses set ``SERVICE_NAME``, ``add_to_server`` (the
    generated ``add_...Servicer_to_server``, as a staticmethod) and ``loading`` (the service's name in messages)."""

    SERVICE_NAME: str
    add_to_server: Callable[[Any, Any], None]
    loading = "the service"

    def __init__(self, verifier: auth.Verifier | None = None, model: M | None = None) -> None:
        self._model = model
        self.loop: ListenerLoop | None = None  # a listener service's subscription to the emulator
        self.verifier = verifier or auth.Verifier(None)

    def register(self, server: Any) -> None:
        self.add_to_server(self, server)

    @property
    def model(self) -> M:
        if self._model is None:
            raise NotReady(f"{self.loading} is still loading its model")
        return self._model

    def ready(self, model: M, loop: ListenerLoop | None = None) -> None:
        self._model, self.loop = model, loop

    def control(self, context: grpc.ServicerContext) -> M:
        """The model, for a caller with the control credential (the control panel); PERMISSION_DENIED otherwise."""
        self.verifier.require(context, [auth.CONTROL])
        return self.model

    def loop_details(self) -> dict[str, str]:
        """The listener loop's counters and whether it is attached, for ``Info.details`` ({} without a loop)."""
        if self.loop is None:
            return {}
        return {k: str(v) for k, v in self.loop.counts.items()} | {"attached": str(self.loop.attached.is_set())}
