"""``python -m receiver``: run the legitimate receiver service (options: receiver/settings.py)."""

from __future__ import annotations

import os
from argparse import Namespace

from diffsem.bundle import load_bundle
from diffsem.defaults import KEY_ENV
from diffsem.keyed import load_key
from receiver.server import Receiver, ReceiverServicer
from receiver.settings import SPEC
from services_common.auth import Verifier, credential_from
from services_common.server import ServiceHost, fail, serve
from services_common.sizes import bundle_k, frames_request_bytes


def make_servicer(args: Namespace, verifier: Verifier) -> ReceiverServicer:
    return ReceiverServicer(verifier, max_request_bytes=frames_request_bytes(bundle_k(args.checkpoints) or 256, True))


def load(args: Namespace, servicer: ReceiverServicer, host: ServiceHost) -> str:
    bundle = load_bundle(args.checkpoints, device=args.device)
    key = load_key(args.key_file) if args.key_file or os.environ.get(KEY_ENV) else None
    rx = Receiver(bundle, args.mode, args.steps, args.eta, args.name, args.classifier, key)
    loop = None
    if args.emulator:
        loop = rx.listen(args.emulator, args.telemetry or None, args.max_batch, args.max_wait_ms,
                         credential_from(args.credential_file))
        loop.on_fatal = lambda msg: fail(host)
        host.on_stop(loop.stop)
    servicer.ready(rx, loop)
    device = "CUDA" if bundle.device.type == "cuda" else "CPU: no CUDA device" if args.device == "auto" else "CPU"
    return (f"model {bundle.model_id} on {bundle.device} ({device}), decoder {rx.method}, batches of <= "
            f"{args.max_batch} within {args.max_wait_ms:.1f} ms, {'self-noise key loaded' if key else 'no self-noise key'}")


if __name__ == "__main__":
    serve(SPEC, make_servicer, load)
