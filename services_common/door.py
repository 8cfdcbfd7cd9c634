"""The door of every gRPC service: who may call which method, checked before any handler runs (docs/design.md §8).

A :class:`Door` is a ``grpc.aio`` server interceptor. For each call of a guarded service it verifies the token in the
call's metadata (signature, audience, expiry: :class:`services_common.auth.Verifier`) and the method's rule, the roles
that may call it, before the request reaches the handler. A refused call is answered UNAUTHENTICATED or
PERMISSION_DENIED by a stand-in handler that never deserialises the request, so nothing of the service runs for it.
A method of a guarded service without a rule is refused too: a new RPC is closed until its rule is written.
Health and reflection (services the door does not guard) stay open for orchestrators.

Rules that depend on the request's content (``Listen`` as which link, ``Report`` under which name) stay in their
handlers, with :meth:`~services_common.auth.Verifier.require`. How large a request may be is the server's
``grpc.max_receive_message_length`` (:func:`services_common.server.grpc_options`), enforced by gRPC as it reads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc

from services_common import auth

Rules = Mapping[str, Sequence[str]]  # method name -> the roles that may call it


class Door(grpc.aio.ServerInterceptor):
    """``rules``: full service name -> {method name -> roles}; ``verifier``: the service's (its audience)."""

    def __init__(self, verifier: auth.Verifier, rules: Mapping[str, Rules]):
        self.verifier = verifier
        self.services = {f"/{service}/" for service in rules}
        self.rules = {f"/{service}/{method}": tuple(roles) for service, methods in rules.items()
                      for method, roles in methods.items()}

    def check(self, method: str, metadata: Any) -> None:
        """Raise :class:`~services_common.auth.AuthError` unless the call may go in."""
        roles = self.rules.get(method)
        if roles is None:
            raise auth.AuthError(f"{method} has no access rule on this service", denied=True)
        who = self.verifier.identify(metadata)
        if who is not None:
            auth.check_role(who, roles)

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]],
                                details: grpc.HandlerCallDetails) -> Any:
        method = details.method
        if not any(method.startswith(prefix) for prefix in self.services):
            return await continuation(details)  # health, reflection, or a method no service here has
        try:
            self.check(method, details.invocation_metadata)
        except auth.AuthError as exc:
            handler = await continuation(details)
            return refusal(handler, exc.code, str(exc))
        return await continuation(details)


def refusal(handler: Any, code: grpc.StatusCode, message: str) -> Any:
    """A handler of ``handler``'s kind that aborts with ``code`` and reads the request as raw bytes (or not at all)."""

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, message)

    if handler is None or handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(refuse)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(refuse)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(refuse)
    return grpc.stream_stream_rpc_method_handler(refuse)


def rules_of(servicer: Any) -> dict[str, Rules]:
    """A servicer's rules for :class:`Door`: ``{servicer.SERVICE_NAME: servicer.RULES}``."""
    return {servicer.SERVICE_NAME: servicer.RULES}
