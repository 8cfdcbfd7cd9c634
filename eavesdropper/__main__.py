"""``python -m eavesdropper``: run one eavesdropper (options: eavesdropper/settings.py)."""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Sequence

from diffsem.bundle import EAVESDROPPER_PARTS, load_bundle
from diffsem.judges import judge_list, load_panel
from eavesdropper.attacks import known_attacks
from eavesdropper.server import Eavesdropper, EavesdropperServicer
from eavesdropper.settings import SPEC
from services_common.auth import Verifier, credential_from
from services_common.errors import BadRequest
from services_common.server import ServiceHost, fail, serve
from services_common.sizes import bundle_k, frames_request_bytes


def make_servicer(args: Namespace, verifier: Verifier) -> EavesdropperServicer:
    if args.attack not in known_attacks():
        raise BadRequest(f"unknown attack {args.attack!r}; known attacks: {', '.join(known_attacks())}")
    return EavesdropperServicer(verifier,
                                max_request_bytes=frames_request_bytes(bundle_k(args.checkpoints) or 256, True))


def load(args: Namespace, servicer: EavesdropperServicer, host: ServiceHost) -> str:
    bundle = load_bundle(args.checkpoints, device=args.device, parts=EAVESDROPPER_PARTS)
    options: dict[str, object] = {"checkpoint_root": args.checkpoints}
    if args.transmitter_checkpoint is not None:
        options["transmitter_checkpoint"] = args.transmitter_checkpoint
    panel = load_panel(bundle, args.checkpoints, judge_list(args.judges), [args.attack])
    eve = Eavesdropper(bundle, args.name, args.attack, options, args.attack_checkpoint, panel)
    loop = None
    if args.emulator:
        loop = eve.listen(args.emulator, args.telemetry or None, args.max_batch, args.max_wait_ms,
                          credential_from(args.credential_file))
        loop.on_fatal = lambda msg: fail(host)
        host.on_stop(loop.stop)
    servicer.ready(eve, loop)
    return (f"eavesdropper {args.name!r} ({args.attack}), model {bundle.model_id} on {bundle.device}, "
            f"judges {', '.join(panel.names(args.attack))}")


def main(argv: Sequence[str] | None = None) -> None:
    if SPEC.parse(argv).list_attacks:
        print("\n".join(known_attacks()))
        return
    serve(SPEC, make_servicer, load, argv=argv, log_name=lambda args: f"eavesdropper[{args.name}]")


if __name__ == "__main__":
    main()
