"""Every service's settings spec, registered where every service is already known: the launcher, which starts them
all (the shared plumbing, ``services_common``, knows no service).

    python -m launcher.specs            # every service's options and environment variables, as Markdown
"""

from __future__ import annotations

from channel_emulator.settings import SPEC as EMULATOR
from control_panel.settings import SPEC as PANEL
from eavesdropper.settings import SPEC as EAVESDROPPER
from receiver.settings import SPEC as RECEIVER
from services_common.spec import ServiceSpec
from transmitter.settings import SPEC as TRANSMITTER

SPECS: tuple[ServiceSpec, ...] = (EMULATOR, TRANSMITTER, PANEL, RECEIVER, EAVESDROPPER)


def markdown() -> str:
    """Every service's options: flag, environment variable, default, meaning."""
    lines = []
    for spec in SPECS:
        lines += [f"### `python -m {spec.name}`", "", "| option | environment | default | meaning |", "|---|---|---|---|"]
        lines += [f"| `{o.flag}` | `{o.env}` | {'' if o.default is None else f'`{o.default}`'} | {o.help} |"
                  for o in spec.options]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
