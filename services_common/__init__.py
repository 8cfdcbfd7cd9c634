"""Plumbing shared by every gRPC service of the live stack (never imported by the core ``diffsem``).

- :mod:`services_common.tensors`: Tensor messages <-> NumPy / torch, with shape and dtype checks.
- :mod:`services_common.errors`: exceptions -> gRPC status codes (INVALID_ARGUMENT, OUT_OF_RANGE, ...).
- :mod:`services_common.server`: a ``grpc.aio`` server with health (NOT_SERVING until loaded), reflection, raised
  message sizes and graceful shutdown on SIGTERM/SIGINT; ``serve``, the one service skeleton.
- :mod:`services_common.spec`: one settings spec per service (argparse, the launcher's argv, environment names).
- :mod:`services_common.auth`: signed per-role credentials, verified by every callee.
- :mod:`services_common.client`: channels with the same message sizes, default deadlines, health waits.
- :mod:`services_common.listener`: subscribe to the emulator, batch frames dynamically, report to telemetry.
"""
