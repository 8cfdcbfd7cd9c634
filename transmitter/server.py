"""The transmitter service: encode images, self-noise them for t*, send the frames to the emulator.

Per request (a batch of B images) it

1. encodes the images with the bundle's encoder (``s``, (B, k), unit power);
2. takes the legitimate link's CSI of the batch's frames (:mod:`transmitter.csi`): the emulator's ``Feedback`` draws
   their channel now and answers sigma_c^2 per frame (flat) or per RE (ofdm), or CSI pinned with ``Feedback``;
3. self-noises them with the frame path's transmitter step, :func:`diffsem.framepath.transmit`, and its
   generator (one ``randn((B, k))`` per request, in request order, as the offline evaluator draws per batch), or,
   with a key, keyed self-noise (a fresh nonce per frame, random per-process prefix);
4. sends the B frames to the emulator in one ``Send`` and replies with their ids and sequence numbers.

Steps 2-4 run under one lock, so the generator's draws and the emulator's see requests in the same order, and each
``Send`` carries the frames whose channel its ``Feedback`` drew.

The generator is seeded from the OS at start-up (:func:`diffsem.seeds.os_seed`, never logged or exposed): a
listener that reads this code cannot replay the self-noise (docs/design.md §8). An explicit seed (``--seed``, or
``Configure``) makes a live run reproducible, and its self-noise known to anyone who knows the seed; the state says
so (``seeded``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

import torch

from diffsem.antenna_path import transmit_antennas
from diffsem.bundle import ModelBundle
from diffsem.framepath import KeyedSender, transmit
from diffsem.keyed import NonceSource, check_value
from diffsem.pipeline import KeyedInfo, PublicHeader, privacy_level
from diffsem.seeds import os_seed
from protos.diffsem.v1 import channel_emulator_pb2 as ch_pb
from protos.diffsem.v1 import channel_emulator_pb2_grpc as ch_grpc
from protos.diffsem.v1 import common_pb2, frame_pb2
from protos.diffsem.v1 import transmitter_pb2 as pb
from services_common.client import DEADLINE_S, grpc_channel
from services_common.errors import BadRequest, OutOfRange
from services_common.frames import antenna_rows, header_to_proto
from services_common.sizes import MAX_FRAMES, MAX_ID_CHARS
from services_common.tensors import rows_to_proto, to_torch
from transmitter.csi import AntennaCsi, CsiSource

log = logging.getLogger(__name__)
IMAGE_DTYPES = (common_pb2.DTYPE_FLOAT32, common_pb2.DTYPE_UINT8)


def images_from_proto(msg: common_pb2.Tensor) -> torch.Tensor:
    """Images as float32 (B, 1, 28, 28) in [0, 1] from (B, 1, 28, 28), (1, 28, 28) or (28, 28) tensors."""
    x = to_torch(msg, "images", IMAGE_DTYPES)
    shape = tuple(x.shape)
    if x.dim() == 2:
        x = x[None, None]
    elif x.dim() == 3:
        x = x[None]
    if x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28):
        raise BadRequest(f"images: shape {shape}, expected (B, 1, 28, 28), (1, 28, 28) or (28, 28)")
    if not 1 <= x.shape[0] <= MAX_FRAMES:
        raise BadRequest(f"images: batch of {x.shape[0]}, expected 1 to {MAX_FRAMES}")
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    if not torch.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise BadRequest("images: float32 pixel values must be finite and in [0, 1] (or send uint8 0-255)")
    return x


class Transmitter:
    """Encoder + self-noising + forwarding; thread-safe. ``seed``: the random self-noise generator's (None: from the
    OS); ``key``: keyed self-noise with this shared secret (None: the paper's random self-noise); ``credential``: the
    transmitter's own, for its calls to the emulator."""

    def __init__(self, bundle: ModelBundle, emulator: str, legit_link: str = "receiver", t_star: int | None = 300,
                 seed: int | None = None, key: bytes | None = None, credential: str | None = None):
        self.bundle = bundle
        self.key = key
        # random nonce prefix per process: no (key, nonce) reuse across restarts
        self.keyed = KeyedSender(key, NonceSource()) if key is not None else None
        self.abar = bundle.abar
        self.legit_link = legit_link
        self.emulator_channel = grpc_channel(emulator, credential)
        self.emulator = ch_grpc.ChannelEmulatorStub(self.emulator_channel)
        self.csi = CsiSource(self.emulator, legit_link, bundle.cfg.k)
        self.lock = threading.Lock()
        self.t_star = self._check_t(t_star)
        self.gen = torch.Generator().manual_seed(os_seed() if seed is None else seed)
        self.seeded = seed is not None
        self.seq = 0
        self.n_tx = 1  # transmit antennas of the last batch

    def _check_t(self, t_star: int | None) -> int | None:
        if t_star is not None and not 0 <= t_star < len(self.abar):
            raise OutOfRange(f"t_star={t_star} is out of range [0, {len(self.abar) - 1}] "
                             f"(the model has T={len(self.abar)} diffusion steps)")
        return t_star

    def feedback(self, req: pb.CsiFeedback) -> None:
        """CSI given directly (or cleared): checked whole before it replaces the previous one."""
        with self.lock:
            self.csi.pin(req)

    def configure(self, req: pb.TransmitterConfig) -> None:
        """Apply ``req`` after checking all of it; ``validate_only`` checks and applies nothing."""
        t_star = self._check_t(req.t_star) if req.HasField("t_star") else self.t_star
        if req.validate_only:
            return
        with self.lock:
            if req.HasField("t_star"):
                self.t_star = t_star
            elif req.disable_self_noise:
                self.t_star = None
            if req.HasField("seed"):
                self.gen = torch.Generator().manual_seed(req.seed)
                self.seeded = True
            log.info("configured: t_star=%s%s", self.t_star, ", self-noise seeded" if req.HasField("seed") else "")

    def state(self) -> pb.TransmitterState:
        msg = pb.TransmitterState(a=privacy_level(self.t_star, self.abar), sigma_c2_feedback=self.csi.sigma_c2,
                                  csi_age_s=self.csi.age_s, frames=self.seq, csi_pinned=self.csi.pinned is not None,
                                  csi_values=self.csi.values,
                                  model_id=self.bundle.model_id, num_train_timesteps=len(self.abar),
                                  self_noise="keyed" if self.key else "random",
                                  seeded=self.seeded and self.key is None,  # keyed self-noise draws no generator
                                  key_check=check_value(self.key) if self.key else "", n_tx=self.n_tx)
        if self.t_star is not None:
            msg.t_star = self.t_star
        return msg

    def _precode(self, s: torch.Tensor, fb: AntennaCsi) -> tuple[torch.Tensor, PublicHeader, KeyedInfo | None]:
        """A multi-antenna batch: DiffSem's self-noise on the beam (random from the transmitter's generator, the
        OS's unless the operator seeded it, or keyed), the null-space self-noise (always the generator's) and the
        precoding (:func:`diffsem.antenna_path.transmit_antennas`, which checks the CSI): the rows (B, k n_tx) its
        frames carry, their public header and, keyed, the nonces the receiver needs."""
        sent = transmit_antennas(s.cpu(), self.t_star, self.abar.cpu(), fb.csi, fb.n0, fb.csi_error, fb.split,
                                 fb.n_tx, self.gen, self.keyed)
        self.n_tx = fb.n_tx
        return antenna_rows(sent.x), sent.header, sent.keyed

    @torch.no_grad()
    def transmit(self, req: pb.TransmitRequest) -> pb.TransmitReply:
        images = images_from_proto(req.images)
        b = images.shape[0]
        ids = list(req.message_ids) or [uuid.uuid4().hex for _ in range(b)]
        if len(ids) != b:
            raise BadRequest(f"{len(ids)} message ids for {b} images; give one per image or none")
        if any(not i or len(i) > MAX_ID_CHARS for i in ids):
            raise BadRequest(f"message ids must be 1-{MAX_ID_CHARS} characters")
        s = self.bundle.encoder(images.to(self.bundle.device)).float()
        with self.lock:
            fb = self.csi.for_frames(b)
            if isinstance(fb, AntennaCsi):
                x, header, keyed = self._precode(s, fb)
            else:
                x, header, keyed = transmit(s, self.t_star, self.abar, fb, self.gen, self.keyed)
                self.n_tx = 1
            x = x.cpu()
            now = time.time()
            seqs = list(range(self.seq, self.seq + b))
            rows = rows_to_proto(x)
            frames = [frame_pb2.Frame(message_id=ids[i], seq=seqs[i], symbols=rows[i],
                                      header=header_to_proto(header, i, self.bundle.model_id, now, keyed))
                      for i in range(b)]
            self.emulator.Send(ch_pb.SendRequest(frames=frames), timeout=DEADLINE_S)
            self.seq += b
        return pb.TransmitReply(message_ids=ids, seqs=seqs, header=frames[0].header, sigma_c2_feedback=self.csi.sigma_c2)
