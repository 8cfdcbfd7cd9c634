"""Live multi-antenna links: the ``antennas`` settings of a link, the legitimate link's drawn-ahead CSI, and each
listener's carry and LMMSE combining (docs/design.md §5, live antennas; the math is docs/design.md §3, multi-antenna
links and null-space self-noise, in :mod:`diffsem.phy.nullspace` and :mod:`diffsem.antenna_path`).

What runs where:

- ``Feedback`` (the legitimate link): its :class:`~diffsem.phy.antennas.MimoLink` draws the channel matrices of the
  transmitter's next frames and the CSI the receiver feeds back (:meth:`MimoLink.draw`, :meth:`MimoLink.feedback`);
  the reply carries that CSI, the noise and the power split (the legitimate link's settings). Only the transmitter
  may call it, and no other message carries the legitimate CSI.
- the transmitter precodes (:func:`diffsem.antenna_path.transmit_antennas`) and sends n_tx antenna signals per
  channel use (:func:`services_common.frames.antenna_rows`).
- ``Send``: the emulator rebuilds the batch's beam from the CSI it drew (:func:`~diffsem.phy.nullspace.beamform`,
  deterministic) and its null-space power from the frames' public headers; every link then carries the antenna
  signals over its own channel (the legitimate link over the channel drawn at ``Feedback``, an eavesdropper over a
  fresh independent one) and combines them as its listener would, with LMMSE on what it can learn from the air
  (:func:`~diffsem.phy.nullspace.listener_channel`, :func:`diffsem.antenna_path.receive`).

A listener therefore gets an ordinary frame: k combined real values and their noise variance, as on a
single-antenna link. Every link draws from its own generator (its seed's, or the OS's: :class:`AntennaLink`), through
one :class:`MimoLink` kept from batch to batch.

Every link has the legitimate link's phy (:func:`check_plan`). On ``ofdm`` everything above is per resource element
of the legitimate link's grid, which every link shares: the CSI is (B, k/2, n_rx, n_tx), with LS its error variance
per RE; the beam, p_null and each listener's combining are per RE (p_null from the headers' per-RE CSI codes), and
each link's channel (its TDL/CDL model, speed, delay spread) and the legitimate CSI's estimator and delay are its own
``LinkConfig`` settings, not the ``antennas`` fields of those names (:func:`legit_array`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from google.protobuf.descriptor import FieldDescriptor

from diffsem.antenna_path import receive
from diffsem.channel import ChannelOutput
from diffsem.config import LinkConfig, build
from diffsem.errors import ConfigError
from diffsem.phy.antennas import AntennaConfig, MimoDraw, MimoLink, check_grid_array
from diffsem.phy.grid import GRID_FIELDS
from diffsem.phy.nullspace import Beam, NullSpaceConfig, beamform, listener_channel, null_power
from diffsem.seeds import derive_seed
from protos.diffsem.v1 import channel_emulator_pb2 as pb
from protos.diffsem.v1 import frame_pb2
from services_common.errors import BadRequest
from services_common.frames import antenna_signals, public_header

FIELDS: tuple[FieldDescriptor, ...] = tuple(pb.AntennaSettings.DESCRIPTOR.fields)
TRANSMITTER_FIELDS = ("n_tx", "null_space", "beam_fraction")  # the transmitter's: the legitimate link's settings
CSI_FIELDS = ("estimator", "feedback_delay", "speed_kmh")  # the CSI its receiver feeds back: the legitimate link's
ENVIRONMENT_FIELDS = ("channel_model",)  # the channel around the transmitter, every link's: set on the legitimate link
# --null-space without --beam-fraction: 1% of the power on the beam, which kept the legitimate receiver at 97.4% and
# the best attack at 28.9% offline (n_t = 4, 20 dB, t* = 300: docs/results/mnist-antennas)
NULL_SPACE_BEAM_FRACTION = 0.01


def unused_fields(phy: str) -> tuple[str, ...]:
    """The antennas' fields a link of ``phy`` does not use. On ofdm the CSI and the channel are the link's own
    ``LinkConfig`` settings (``estimator``, ``feedback_delay``, ``speed_kmh``, ``channel_model``), so the antennas'
    fields of those names are refused (:func:`check_update`), left out of the link's state and of its core settings
    (:func:`legit_array`); on flat, none."""
    return (*CSI_FIELDS, *ENVIRONMENT_FIELDS) if phy == "ofdm" else ()


def without(s: pb.AntennaSettings, fields: tuple[str, ...]) -> pb.AntennaSettings:
    """A copy of ``s`` with ``fields`` cleared."""
    out = pb.AntennaSettings()
    out.CopyFrom(s)
    for f in fields:
        out.ClearField(f)
    return out


def initial() -> pb.AntennaSettings:
    """Every field at the core's default (one antenna each side, no null space)."""
    defaults = {**AntennaConfig().model_dump(), **NullSpaceConfig().model_dump()}
    return pb.AntennaSettings(**{f.name: defaults[f.name] for f in FIELDS})


def merged(current: pb.AntennaSettings, update: pb.AntennaSettings) -> pb.AntennaSettings:
    """``current`` with the fields set in ``update``."""
    out = pb.AntennaSettings()
    out.CopyFrom(current)
    for f in FIELDS:
        if update.HasField(f.name):
            setattr(out, f.name, getattr(update, f.name))
    return out


def configs(s: pb.AntennaSettings) -> tuple[AntennaConfig, NullSpaceConfig]:
    """The core's settings of ``s`` (unset: the defaults), validated field by field (ConfigError naming the field)."""
    given = {f.name: getattr(s, f.name) for f in FIELDS if s.HasField(f.name)}
    array = build(AntennaConfig, **{n: v for n, v in given.items() if n in AntennaConfig.model_fields})
    split = build(NullSpaceConfig, **{n: v for n, v in given.items() if n in NullSpaceConfig.model_fields})
    return array, split  # type: ignore[return-value]


def check_update(update: pb.AntennaSettings, legit: bool, phy: str = "flat") -> None:
    """An eavesdropper's link sets only its receive antennas and its correlation with the legitimate receiver's
    channel; the power split is the transmitter's and the fed-back CSI the legitimate receiver's. On an ofdm link
    (``phy``, after the update) the CSI and the channel are the link's own settings, so the antennas' fields of the
    same names would be ignored there: refused, naming the link's fields to set."""
    ignored = [n for n in unused_fields(phy) if update.HasField(n)]
    if legit and ignored:
        raise BadRequest(f"antennas.{', antennas.'.join(ignored)} shape a flat multi-antenna link; on an ofdm link "
                         f"the CSI and the channel are the link's own settings: set {', '.join(ignored)} on the link "
                         "itself (not under antennas)")
    if not legit:
        mine = [n for n in (*TRANSMITTER_FIELDS, *CSI_FIELDS, *ENVIRONMENT_FIELDS) if update.HasField(n)]
        if mine:
            raise BadRequest(f"antennas.{', antennas.'.join(mine)} {'belongs' if len(mine) == 1 else 'belong'} to "
                             "the transmitter and the legitimate receiver: set it on the legitimate link; an "
                             "eavesdropper's link sets only antennas.n_rx and antennas.correlation")
    elif update.HasField("correlation") and update.correlation != 0:
        raise BadRequest(f"antennas.correlation={update.correlation:g} is an eavesdropper's (its channel's "
                         "correlation with the legitimate receiver's): set it on an eavesdropper's link")


def legit_array(phy: str, s: pb.AntennaSettings) -> AntennaConfig:
    """The legitimate link's antennas for the core's :class:`MimoLink`: every field of ``s`` a link of ``phy`` uses
    (:func:`unused_fields`; on ofdm its channel and CSI are its ``LinkConfig``'s)."""
    return configs(without(s, unused_fields(phy)))[0]


def check_plan(links: dict[str, pb.LinkSettings], legit_name: str, new_links: dict[str, pb.LinkSettings],
               k: int, config: Callable[[pb.LinkSettings, int], LinkConfig]) -> None:
    """Rules across links (after an update, before it applies). The legitimate link's power split must fit its
    antennas (null-space self-noise needs n_tx > its n_rx: the core's :meth:`NullSpaceConfig.check`). With
    n_tx > 1 the transmitter precodes for every link, so every link, and every link still to be created
    (``new_links``: the settings new eavesdropper links get, by what they are called), has the legitimate link's
    phy; on ofdm the precoder is per RE of the legitimate link's grid, so every link has its grid (an eavesdropper's
    own channel model, delay spread and speed may differ), the legitimate receiver feeds back per RE, and every
    link's antennas fit its grid (:func:`~diffsem.phy.antennas.check_grid_array`; ``config`` builds a link's core
    settings: :func:`channel_emulator.schema.config`, which builds on this module)."""
    legit = links[legit_name]
    array, split = configs(legit.antennas)
    split.check(array.n_tx, array.n_rx)
    if array.n_tx == 1:
        return
    others = {**{n: s for n, s in links.items() if n != legit_name}, **new_links}
    wrong = [n for n, s in others.items() if s.phy != legit.phy]
    if wrong:
        raise BadRequest(f"antennas.n_tx={array.n_tx} on the legitimate link (phy={legit.phy!r}) precodes for every "
                         f"link; {', '.join(wrong[:5])} use phy={others[wrong[0]].phy!r}: set phy={legit.phy!r} on "
                         "every link, or antennas.n_tx=1")
    if legit.phy != "ofdm":
        return
    if legit.feedback != "re":
        raise BadRequest(f"antennas.n_tx={array.n_tx} on an ofdm link precodes per RE: the legitimate link needs "
                         f"feedback='re' (per-RE CSI), not {legit.feedback!r}")
    grid = {f: _value(legit, f) for f in GRID_FIELDS}
    for name, s in others.items():
        off = [f"{f}={_value(s, f)} (the legitimate link's is {v})" for f, v in grid.items() if _value(s, f) != v]
        if off:
            raise BadRequest(f"antennas.n_tx={array.n_tx} on an ofdm link precodes per RE of the legitimate link's "
                             f"grid; {name} has {', '.join(off)}: give every link the legitimate link's "
                             f"{', '.join(GRID_FIELDS)}")
    _check_grids(array.n_tx, {legit_name: legit, **others}, k, config)


def _check_grids(n_tx: int, links: dict[str, pb.LinkSettings], k: int,
                 config: Callable[[pb.LinkSettings, int], LinkConfig]) -> None:
    """Each ofdm link's antennas on its grid (the core's check, once per distinct feedback, delay and n_rx: the rest
    of what it checks is the grid, one for every link, and was checked with the link); BadRequest naming the link."""
    distinct: dict[tuple[str, int, int], str] = {}
    for name, s in links.items():
        distinct.setdefault((s.feedback, s.feedback_delay, s.antennas.n_rx or 1), name)
    for (_, _, n_rx), name in distinct.items():
        try:
            check_grid_array(config(links[name], k), AntennaConfig(n_tx=n_tx, n_rx=n_rx), k)
        except ConfigError as e:
            raise BadRequest(f"{name}: {e}") from None


def _value(s: pb.LinkSettings, name: str) -> object:
    """A LinkSettings field's value, a repeated one as a tuple (comparable, and printed as the core's)."""
    v = getattr(s, name)
    return tuple(v) if s.DESCRIPTOR.fields_by_name[name].is_repeated else v


@dataclass
class Drawn:
    """The legitimate link's next frames, drawn at ``Feedback``: their channels, the CSI fed back, the link settings,
    split and antennas the transmitter was told to use, and the SNR they were drawn at."""

    draw: MimoDraw
    csi: torch.Tensor  # (n, M, n_rx, n_tx) complex64: M = 1 (flat) or k/2 (ofdm, one matrix per carried RE)
    cfg: LinkConfig  # the legitimate link's settings (its phy, grid, channel and CSI on ofdm)
    array: AntennaConfig  # the legitimate link's antennas (and its channel and CSI settings on flat)
    split: NullSpaceConfig
    snr_db: float
    beam: Beam  # from the CSI, as the transmitter computes it: once per Feedback, for the reply and the Send

    @property
    def n_tx(self) -> int:
        return self.array.n_tx

    def reply(self, n0: float, csi_error: float | torch.Tensor) -> pb.FeedbackReply:
        """The transmitter's ``FeedbackReply``: the CSI as (re, im) float32 pairs, row-major, over its M channel uses;
        an LS estimate's error variance per RE when it has one (ofdm), with its mean in ``csi_error``."""
        n, m, n_rx, n_tx = self.csi.shape
        per_re = isinstance(csi_error, torch.Tensor)
        return pb.FeedbackReply(phy="antennas", frames=n, n_tx=n_tx, n_rx=n_rx, channel_uses=m,
                                csi=torch.view_as_real(self.csi).reshape(-1).tolist(), n0=n0,
                                csi_error=float(csi_error.mean()) if per_re else csi_error,
                                csi_error_re=csi_error.tolist() if per_re else [],
                                beam_fraction=self.split.beam_fraction, null_space=self.split.null_space,
                                sigma_c2=float(self.beam.feedback(n0).mean()))


@dataclass
class Batch:
    """One ``Send`` of antenna signals x (B, k/2, n_tx) complex64, with the beam they were precoded on and the
    null-space power per channel use, (B, 1) or (B, k/2) (None without null-space self-noise), and the legitimate
    link's draw."""

    x: torch.Tensor
    beam: Beam
    p_null: torch.Tensor | None
    legit: Drawn
    n_tx: int

    @property
    def k(self) -> int:
        return 2 * self.x.shape[1]


def batch(drawn: Drawn | None, rows: torch.Tensor, frames: list[frame_pb2.Frame], n_tx_now: int) -> Batch:
    """A Send's rows (B, k n_tx) float32 as a :class:`Batch` over the frames ``drawn`` at the last Feedback. The beam
    is the one the transmitter computed from the same CSI; p_null = 1 - beta (a + sigma_self^2) per channel use from
    the public headers (:func:`~diffsem.phy.nullspace.null_power`; per RE from their CSI codes on ofdm). BadRequest
    when the Send does not match that Feedback."""
    b, length = rows.shape
    if drawn is None:
        raise BadRequest(f"the legitimate link has n_tx={n_tx_now} antennas: a Send must follow the Feedback that "
                         "drew its frames' channel (the transmitter precodes on that CSI)")
    n, m = drawn.csi.shape[:2]
    if b != n or length % (2 * drawn.n_tx) or m > 1 and length != 2 * m * drawn.n_tx:
        k = f"k = {2 * m}" if m > 1 else "k even"
        raise BadRequest(f"a Send of {b} frames of {length} values after a Feedback for {n} frames on "
                         f"n_tx={drawn.n_tx} antennas: send {n} frames of k x n_tx values ({k})")
    k = length // drawn.n_tx
    p_null = _null_power(drawn, frames, k) if drawn.split.null_space else None
    return Batch(antenna_signals(rows, drawn.n_tx), drawn.beam, p_null, drawn, drawn.n_tx)


def _null_power(drawn: Drawn, frames: list[frame_pb2.Frame], k: int) -> torch.Tensor:
    """The null-space power of a Send's frames, (B, M), from their public header as every listener reads it
    (:func:`services_common.frames.public_header`): one batch, so one t* and a, and per-RE CSI codes exactly when
    the CSI was per RE."""
    first = frames[0].header
    t_star = first.t_star if first.HasField("t_star") else None
    per_re = drawn.csi.shape[1] > 1
    odd = [f.seq for f in frames if f.header.a != first.a or (f.header.t_star if f.header.HasField("t_star") else None)
           != t_star or bool(f.header.csi) != per_re]
    if odd:
        raise BadRequest(f"frame seq {odd[0]}: a Send of antenna signals is one precoded batch, its frames share t* "
                         f"and a, and carry per-RE CSI codes in their header {'on' if per_re else 'only on'} an "
                         "ofdm link")
    header = public_header(frames, t_star, first.a, k)
    return null_power(drawn.beam.beta, first.a, header.sigma_self2, k)


@functools.lru_cache(maxsize=256)
def eavesdropper_array(n_tx: int, n_rx: int, correlation: float, channel_model: str | None) -> AntennaConfig:
    """An eavesdropper link's antennas, in the legitimate link's ``channel_model`` on flat (None on ofdm: the channel
    is the link's own settings'), validated once per distinct settings rather than on every batch it carries
    (AntennaConfig is frozen, so links with the same settings share one; a ValidationError is not cached)."""
    model = {} if channel_model is None else {"channel_model": channel_model}
    return AntennaConfig(n_tx=n_tx, n_rx=n_rx, correlation=correlation, **model)


class AntennaLink:
    """A link's multi-antenna channel: its own generator (seeded from the link's seed, which the emulator draws from
    the OS unless the operator gives one) and the core :class:`MimoLink` that draws from it, kept across batches."""

    def __init__(self, seed: int):
        self.gen = torch.Generator().manual_seed(derive_seed(seed, "antennas"))
        self.drawn: Drawn | None = None  # the legitimate link's frames drawn at the last Feedback, not yet sent
        self._mimo: MimoLink | None = None
        self._key: tuple[object, ...] = ()

    def mimo(self, cfg: LinkConfig, array: AntennaConfig, k: int, snr_db: float) -> MimoLink:
        """The link at ``snr_db`` (Es/N0 per receive antenna) with these antennas. One :class:`MimoLink` serves
        batch after batch (an ofdm link's channel runs on a frame clock, so its next frames continue it; a flat CDL
        link keeps its channel model), as one serves every batch offline; it is made anew, from the link's
        generator, when the link's channel settings (:meth:`LinkConfig.channel`), its antennas or k change."""
        key = (cfg.channel(), array, k)
        if self._mimo is None or key != self._key:
            self._mimo, self._key = MimoLink(cfg, array, self.gen, k), key
        self._mimo.set_snr(snr_db)
        return self._mimo

    def draw_ahead(self, n: int, snr_db: float, settings: pb.AntennaSettings, cfg: LinkConfig,
                   k: int) -> pb.FeedbackReply:
        """The legitimate link's next ``n`` frames: channels, then the fed-back CSI (the core's order), kept in
        :attr:`drawn` for the Send that carries them; returns the transmitter's reply. ``cfg``: the link's
        settings (on ofdm its grid, channel and CSI: :func:`legit_array`); ``k``: real values per frame."""
        array, split = legit_array(cfg.phy, settings), configs(settings)[1]
        link = self.mimo(cfg, array, k, snr_db)
        draw = link.draw(n)
        csi = link.feedback(draw)
        self.drawn = Drawn(draw, csi, cfg, array, split, snr_db, beamform(csi, split.beam_fraction))
        return self.drawn.reply(link.n0, link.csi_error)

    def carry(self, b: Batch, snr_db: float, own: pb.AntennaSettings, legit: bool, cfg: LinkConfig) -> ChannelOutput:
        """Carry the batch over this link and combine it as its listener does: the legitimate link over the
        channels drawn at Feedback (at the SNR they were drawn at), an eavesdropper's over channels it draws now at
        ``snr_db`` with its settings ``cfg`` (on ofdm, its own channel on the legitimate link's grid) and its
        ``own`` antenna settings' receive antennas, correlated with the legitimate draw of the same frames by their
        ``correlation`` (:meth:`MimoLink.draw`). Returns the combined latent (B, k), its noise per real dim ((B,),
        or (B, k) on ofdm) and the beam's effective gain (B,)."""
        if legit:
            link = self.mimo(b.legit.cfg, b.legit.array, b.k, b.legit.snr_db)
            draw = b.legit.draw
        else:
            model = b.legit.array.channel_model if cfg.phy == "flat" else None
            link = self.mimo(cfg, eavesdropper_array(b.n_tx, own.n_rx or 1, own.correlation, model), b.k, snr_db)
            draw = link.draw(b.x.shape[0], b.legit.draw)
        y = link.carry(b.x, draw)
        g, r = listener_channel(draw.h, b.beam, b.p_null, link.n0)  # what its listener learns from the air
        return receive(y, g, r)
