"""One settings spec per service: it generates the service's argparse, the launcher's argv and the environment
variable names it documents (docs/design.md §5, "One service skeleton").

Every option ``--some-thing`` of a service can also be set with ``$DIFFSEM_SOME_THING`` (the command line wins),
and ``$DIFFSEM_SCENARIO`` names a preset whose settings come under both (services_common/scenarios.py).
A service adds an option by adding one :class:`Option` to its spec (``<service>/settings.py``); the launcher
builds command lines with :meth:`ServiceSpec.argv`, which refuses names the spec does not have. The registry of
every service's spec lives where every service is known: :mod:`launcher.specs`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from services_common.scenarios import ENV as SCENARIO_ENV
from services_common.scenarios import scenario_setting

ENV_PREFIX = "DIFFSEM_"
# The stack's default ports, in one place: each service binds its own and finds the others on loopback by default
# (the launcher's fixed ports; docker-compose.yml writes the same numbers for its containers).
DEFAULT_PORTS = {"transmitter": 50051, "channel_emulator": 50052, "receiver": 50053, "eavesdropper": 50054,
                 "telemetry": 50060, "eavesdroppers_from": 50070, "http": 8000}


def local_address(service: str) -> str:
    """The default address of ``service`` (a :data:`DEFAULT_PORTS` name) on loopback, e.g. ``127.0.0.1:50052``."""
    return f"127.0.0.1:{DEFAULT_PORTS[service]}"


@dataclass(frozen=True)
class Option:
    """One command-line option. ``kind``: ``value`` (one value), ``flag`` (store_true) or ``append``
    (repeatable; comma-separated in the environment)."""

    flag: str
    help: str
    default: Any = None
    type: Callable[[str], Any] = str
    choices: Sequence[str] | None = None
    kind: Literal["value", "flag", "append"] = "value"
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.dest.upper()

    def env_default(self) -> Any:
        """The default, overridden by ``$DIFFSEM_SCENARIO``'s preset (services_common/scenarios.py), then by the
        environment variable when it is set and not empty. ValueError for a value the option cannot read."""
        own = os.environ.get(self.env)
        text = own or scenario_setting(self.dest)
        if text is None or text == "":
            if self.kind == "append":
                return list(self.default or [])
            return bool(self.default) if self.kind == "flag" else self.default
        if self.kind == "flag":
            return text.strip().lower() in ("1", "true", "yes", "on")
        where = f"${self.env}" if own else f"${SCENARIO_ENV} {os.environ[SCENARIO_ENV]!r}"
        try:
            value = [self.type(t) for t in text.split(",") if t] if self.kind == "append" else self.type(text)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where} gives {text!r}, which {self.flag} cannot read: {exc}") from None
        if self.choices and self.kind == "value" and value not in self.choices:  # argparse checks the command line
            raise ValueError(f"{where} gives {text!r}; {self.flag} takes {', '.join(map(str, self.choices))}")
        return value

    def add_to(self, p: argparse.ArgumentParser) -> None:
        help_text = f"{self.help} (${self.env})"
        try:
            default = self.env_default()
        except ValueError as exc:  # a bad $DIFFSEM_<OPTION> or scenario: one line and exit status 2, no traceback
            p.error(str(exc))
        if self.kind == "flag":
            p.add_argument(self.flag, action="store_true", default=default, help=help_text)
        else:
            p.add_argument(self.flag, type=self.type, choices=self.choices, default=default,
                           action="append" if self.kind == "append" else "store", metavar=self.metavar,
                           help=help_text + ("" if self.default is None else f"; default {self.default}"))

    def argv(self, value: Any) -> list[str]:
        if self.kind == "flag":
            return [self.flag] if value else []
        if value is None:
            return []
        if self.kind == "append":
            return [a for v in value for a in (self.flag, str(v))]
        if isinstance(value, tuple | list):  # a tuple-valued setting (pilot_symbols) is comma-separated
            return [self.flag, ",".join(map(str, value))]
        return [self.flag, str(value)]


def server_options(port: int) -> tuple[Option, ...]:
    """What every gRPC service of the stack takes: where it binds, its credential and how it verifies callers."""
    return (
        Option("--host", "bind address", "127.0.0.1"),
        Option("--port", "gRPC port (0 = ephemeral)", port, int),
        Option("--port-file", "write the bound port(s) here as JSON", None, Path),
        Option("--credential-file", "this service's own credential for its gRPC calls (services_common/auth.py)"),
        Option("--auth-key-file", "authority key that verifies callers (verifying services only)"),
        Option("--auth-pins-file", "audience keys of the accepted callers (instead of the authority key)"),
    )


def model_options(checkpoints_help: str = "checkpoint bundle folder") -> tuple[Option, ...]:
    from diffsem.defaults import checkpoint_dir

    return (Option("--checkpoints", checkpoints_help, checkpoint_dir("mnist"), Path),
            Option("--device", "auto (CUDA when present), cpu, cuda, cuda:1, ...", "auto"))


def link_options(names: Sequence[str], prefix: str = "", whose: str = "") -> tuple[Option, ...]:
    """Options for the link settings ``names`` (``--{prefix}{name}``; ``whose`` starts the help): help, default,
    bound, parser and choices all come from the field of ``diffsem.config.LinkConfig`` (the one definition of a link
    setting's meaning, default and bound)."""
    from diffsem.config import LinkConfig, link_field_parser, link_help

    out = []
    for name in names:
        parse, choices = link_field_parser(name)
        out.append(Option("--" + (prefix + name).replace("_", "-"), whose + link_help(name),
                          LinkConfig.model_fields[name].default, parse, choices))
    return tuple(out)


LISTENER_OPTIONS = (
    Option("--emulator", "channel emulator address ('' = do not listen)", local_address("channel_emulator")),
    Option("--telemetry", "control panel telemetry address ('' = none)", local_address("telemetry")),
    Option("--max-batch", "dynamic batching: most frames per decode", 64, int),
    Option("--max-wait-ms", "dynamic batching: longest wait for more frames", 5.0, float),
)


@dataclass(frozen=True)
class ServiceSpec:
    """A service's name (its module), description and options."""

    name: str
    description: str
    options: tuple[Option, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        dests = [o.dest for o in self.options]
        dup = sorted({d for d in dests if dests.count(d) > 1})
        if dup:
            raise ValueError(f"{self.name}: options defined twice: {dup}")

    def option(self, dest: str) -> Option:
        for o in self.options:
            if o.dest == dest:
                return o
        raise KeyError(f"{self.name} has no option {dest!r}; it has {', '.join(o.dest for o in self.options)}")

    def parser(self) -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(prog=f"python -m {self.name}", description=self.description)
        for o in self.options:
            o.add_to(p)
        return p

    def parse(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        return self.parser().parse_args(argv)

    def argv(self, **values: Any) -> list[str]:
        """Command-line arguments for ``values`` (by option dest); KeyError on a name the spec does not have."""
        return [a for dest, v in values.items() for a in self.option(dest).argv(v)]

    def environment(self) -> dict[str, str]:
        """Environment variable -> what it sets (the documented names)."""
        return {o.env: o.help for o in self.options}
