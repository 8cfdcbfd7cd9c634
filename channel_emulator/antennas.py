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
single-antenna link. Every link draws from its own generator (its seed's, or the OS's: :class:`AntennaLink`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from google.protobuf.descriptor import FieldDescriptor

from diffsem.antenna_path import receive
from diffsem.channel import ChannelOutput
from diffsem.config import LinkConfig, build
from diffsem.phy.antennas import AntennaConfig, MimoDraw, MimoLink
from diffsem.phy.nullspace import Beam, NullSpaceConfig, beamform, listener_channel, null_power
from diffsem.seeds import derive_seed
from protos.diffsem.v1 import channel_emulator_pb2 as pb
from protos.diffsem.v1 import frame_pb2
from services_common.errors import BadRequest
from services_common.frames import antenna_signals

FIELDS: tuple[FieldDescriptor, ...] = tuple(pb.AntennaSettings.DESCRIPTOR.fields)
TRANSMITTER_FIELDS = ("n_tx", "null_space", "beam_fraction")  # the transmitter's: the legitimate link's settings
CSI_FIELDS = ("estimator", "feedback_delay", "speed_kmh")  # the CSI its receiver feeds back: the legitimate link's
ENVIRONMENT_FIELDS = ("channel_model",)  # the channel around the transmitter, every link's: set on the legitimate link
# --null-space without --beam-fraction: 1% of the power on the beam, which kept the legitimate receiver at 97.4% and
# the best attack at 28.9% offline (n_t = 4, 20 dB, t* = 300: docs/results/mnist-antennas)
NULL_SPACE_BEAM_FRACTION = 0.01


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


def check_update(update: pb.AntennaSettings, legit: bool) -> None:
    """An eavesdropper's link sets only its receive antennas and its correlation with the legitimate receiver's
    channel; the power split is the transmitter's and the fed-back CSI the legitimate receiver's."""
    if not legit:
        mine = [n for n in (*TRANSMITTER_FIELDS, *CSI_FIELDS, *ENVIRONMENT_FIELDS) if update.HasField(n)]
        if mine:
            raise BadRequest(f"antennas.{', antennas.'.join(mine)} {'belongs' if len(mine) == 1 else 'belong'} to "
                             "the transmitter and the legitimate receiver: set it on the legitimate link; an "
                             "eavesdropper's link sets only antennas.n_rx and antennas.correlation")
    elif update.HasField("correlation") and update.correlation != 0:
        raise BadRequest(f"antennas.correlation={update.correlation:g} is an eavesdropper's (its channel's "
                         "correlation with the legitimate receiver's): set it on an eavesdropper's link")


def check_plan(links: dict[str, pb.LinkSettings], legit_name: str, eve_defaults: pb.LinkSettings) -> None:
    """Rules across links (after an update, before it applies): the legitimate link's power split must fit its
    antennas (null-space self-noise needs n_tx > its n_rx: the core's :meth:`NullSpaceConfig.check`), and with
    n_tx > 1 every link, and every new eavesdropper link, is flat (one channel matrix per frame: i.i.d. Rayleigh or
    the legitimate link's CDL)."""
    array, split = configs(links[legit_name].antennas)
    split.check(array.n_tx, array.n_rx)
    if array.n_tx > 1:
        ofdm = [n for n, s in links.items() if s.phy != "flat"] + (["new eavesdropper links"]
                                                                   if eve_defaults.phy != "flat" else [])
        if ofdm:
            raise BadRequest(f"antennas.n_tx={array.n_tx} makes every link a flat multi-antenna link; "
                             f"{', '.join(ofdm[:5])} use phy={links.get(ofdm[0], eve_defaults).phy!r}: set "
                             "phy='flat' (per-RE null-space self-noise on ofdm links is not wired live yet)")


@dataclass
class Drawn:
    """The legitimate link's next frames, drawn at ``Feedback``: their channels, the CSI fed back, the split and
    antennas the transmitter was told to use, and the SNR they were drawn at."""

    draw: MimoDraw
    csi: torch.Tensor  # (n, 1, n_rx, n_tx) complex64
    array: AntennaConfig  # the legitimate link's antennas and CSI settings
    split: NullSpaceConfig
    snr_db: float
    beam: Beam  # from the CSI, as the transmitter computes it: once per Feedback, for the reply and the Send

    @property
    def n_tx(self) -> int:
        return self.array.n_tx

    def reply(self, n0: float, csi_error: float) -> pb.FeedbackReply:
        """The transmitter's ``FeedbackReply``: the CSI as (re, im) float32 pairs, row-major."""
        n, _, n_rx, n_tx = self.csi.shape
        return pb.FeedbackReply(phy="antennas", frames=n, n_tx=n_tx, n_rx=n_rx,
                                csi=torch.view_as_real(self.csi).reshape(-1).tolist(), n0=n0, csi_error=csi_error,
                                beam_fraction=self.split.beam_fraction, null_space=self.split.null_space,
                                sigma_c2=float(self.beam.feedback(n0).mean()))


@dataclass
class Batch:
    """One ``Send`` of antenna signals x (B, k/2, n_tx) complex64, with the beam they were precoded on and the
    null-space power per frame (B, 1) (None without null-space self-noise), and the legitimate link's draw."""

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
    is the one the transmitter computed from the same CSI; p_null = 1 - beta (a + sigma_self^2) from the public
    headers (:func:`~diffsem.phy.nullspace.null_power`). BadRequest when the Send does not match that Feedback."""
    b, length = rows.shape
    if drawn is None:
        raise BadRequest(f"the legitimate link has n_tx={n_tx_now} antennas: a Send must follow the Feedback that "
                         "drew its frames' channel (the transmitter precodes on that CSI)")
    n = drawn.csi.shape[0]
    if b != n or length % (2 * drawn.n_tx):
        raise BadRequest(f"a Send of {b} frames of {length} values after a Feedback for {n} frames on "
                         f"n_tx={drawn.n_tx} antennas: send {n} frames of k x n_tx values (k even)")
    beam = drawn.beam
    k = length // drawn.n_tx
    p_null = None
    if drawn.split.null_space:
        s2 = torch.tensor([f.header.sigma_self2 for f in frames], dtype=torch.float64)
        p_null = null_power(beam.beta, float(frames[0].header.a), s2, k)
    return Batch(antenna_signals(rows, drawn.n_tx), beam, p_null, drawn, drawn.n_tx)


@functools.lru_cache(maxsize=256)
def eavesdropper_array(n_tx: int, n_rx: int, correlation: float, channel_model: str) -> AntennaConfig:
    """An eavesdropper link's antennas in the legitimate link's ``channel_model``, validated once per distinct
    settings rather than on every batch it carries (AntennaConfig is frozen, so links with the same settings share
    one; a ValidationError is not cached)."""
    return AntennaConfig(n_tx=n_tx, n_rx=n_rx, correlation=correlation, channel_model=channel_model)


class AntennaLink:
    """A link's multi-antenna channel: its receive antennas and its own generator (seeded from the link's seed,
    which the emulator draws from the OS unless the operator gives one)."""

    def __init__(self, seed: int):
        self.gen = torch.Generator().manual_seed(derive_seed(seed, "antennas"))
        self.drawn: Drawn | None = None  # the legitimate link's frames drawn at the last Feedback, not yet sent

    def mimo(self, snr_db: float, array: AntennaConfig) -> MimoLink:
        """The link at ``snr_db`` (Es/N0 per receive antenna) with these antennas, drawing from its generator."""
        return MimoLink(LinkConfig(snr_db=snr_db), array, self.gen)

    def draw_ahead(self, n: int, snr_db: float, settings: pb.AntennaSettings) -> pb.FeedbackReply:
        """The legitimate link's next ``n`` frames: channels, then the fed-back CSI (the core's order), kept in
        :attr:`drawn` for the Send that carries them; returns the transmitter's reply."""
        array, split = configs(settings)
        link = self.mimo(snr_db, array)
        draw = link.draw(n)
        csi = link.feedback(draw)
        self.drawn = Drawn(draw, csi, array, split, snr_db, beamform(csi, split.beam_fraction))
        return self.drawn.reply(link.n0, link.csi_error)

    def carry(self, b: Batch, snr_db: float, own: pb.AntennaSettings, legit: bool) -> ChannelOutput:
        """Carry the batch over this link and combine it as its listener does: the legitimate link over the
        channels drawn at Feedback (at the SNR they were drawn at), an eavesdropper's over channels it draws now at
        ``snr_db`` with its ``own`` settings' receive antennas, correlated with the legitimate draw of the same
        frames by their ``correlation`` (:meth:`MimoLink.draw`). Returns the combined latent (B, k), its noise per
        real dim (B,) and the beam's effective gain (B,)."""
        if legit:
            link = self.mimo(b.legit.snr_db, b.legit.array)
            draw = b.legit.draw
        else:
            link = self.mimo(snr_db, eavesdropper_array(b.n_tx, own.n_rx or 1, own.correlation,
                                                        b.legit.array.channel_model))
            draw = link.draw(b.x.shape[0], b.legit.draw)
        y = link.carry(b.x, draw)
        g, r = listener_channel(draw.h, b.beam, b.p_null, link.n0)  # what its listener learns from the air
        return receive(y, g, r)
