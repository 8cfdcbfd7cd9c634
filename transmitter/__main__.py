"""``python -m transmitter``: run the transmitter service (options: transmitter/settings.py).

torch and the model are imported in ``load``, after the port is bound: the control panel, which needs this
service's address, starts while the model loads."""

from __future__ import annotations

from argparse import Namespace

from services_common.auth import Verifier, credential_from
from services_common.server import ServiceHost, serve
from transmitter.servicer import TransmitterServicer
from transmitter.settings import SPEC


def make_servicer(args: Namespace, verifier: Verifier) -> TransmitterServicer:
    return TransmitterServicer(verifier)


def load(args: Namespace, servicer: TransmitterServicer, host: ServiceHost) -> str:
    from diffsem.bundle import load_bundle
    from diffsem.keyed import load_key
    from transmitter.server import Transmitter

    bundle = load_bundle(args.checkpoints, device=args.device)
    t_star = None if args.no_self_noise else args.t_star
    key = load_key(args.key_file) if args.self_noise == "keyed" else None
    servicer.ready(Transmitter(bundle, args.emulator, args.legit_link, t_star, args.seed, key,
                               credential_from(args.credential_file)))
    return (f"model {bundle.model_id} on {bundle.device}, t*={t_star}, {args.self_noise} self-noise, "
            f"emulator {args.emulator}")


if __name__ == "__main__":
    serve(SPEC, make_servicer, load)
