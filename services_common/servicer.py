"""What every model-serving servicer shares: its access rules, its largest request, and a model that arrives after
the port is bound.

A service binds its port first and loads its model afterwards (``services_common.server.serve``); until
:meth:`ModelServicer.ready` hands the model over, every RPC answers UNAVAILABLE (``NotReady``). Who may call which
method is the servicer's ``RULES``, checked at the service's door (``services_common.door``) before a handler runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from services_common import auth
from services_common.errors import NotReady
from services_common.server import MAX_MESSAGE_BYTES

if TYPE_CHECKING:
    from services_common.listener import ListenerLoop

M = TypeVar("M")


class ModelServicer(Generic[M]):
    """Mixed in before a generated ``...Servicer`` base. Subclasses set ``SERVICE_NAME``, ``RULES`` (method name ->
    the roles that may call it), ``add_to_server`` (the generated ``add_...Servicer_to_server``, as a staticmethod)
    and ``loading`` (the service's name in messages). ``max_request_bytes``: the largest request its RPCs need
    (default the class's ``MAX_REQUEST_BYTES``)."""

    SERVICE_NAME: str
    RULES: dict[str, tuple[str, ...]]
    MAX_REQUEST_BYTES = MAX_MESSAGE_BYTES
    add_to_server: Callable[[Any, Any], None]
    loading = "the service"

    def __init__(self, verifier: auth.Verifier | None = None, model: M | None = None,
                 max_request_bytes: int | None = None) -> None:
        self._model = model
        self.max_request_bytes = max_request_bytes or self.MAX_REQUEST_BYTES
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

    def loop_details(self) -> dict[str, str]:
        """The listener loop's counters and whether it is attached, for ``Info.details`` ({} without a loop)."""
        if self.loop is None:
            return {}
        return {k: str(v) for k, v in self.loop.counts.items()} | {"attached": str(self.loop.attached.is_set())}
