"""The noise-replay attack (docs/design.md §4 and §8): an eavesdropper that has read the source replays the
transmitter's self-noise generator from every seed it can guess, and removes the self-noise wherever a guess is right.

Why it can work. The paper's random self-noise is eps_self ~ N(0, I) drawn by the transmitter's generator: one
``randn((B, k))`` per batch of B frames (:func:`diffsem.pipeline.self_noise_frame`). For k a multiple of 16 (k is
a multiple of 64) successive draws are one stream, row after row, so the frame with public sequence number ``seq`` got
row ``seq - offset`` of its generator's stream, where ``offset`` is the seq at which that generator was (re)seeded.
A listener receives y = sqrt(a) s + sigma_self eps_self + n; with the right row, y - sigma_self eps_self =
sqrt(a) s + n sits at level a / (a + sigma^2) instead of a / (a + sigma_self^2 + sigma^2) (docs/design.md §3).

What it tries: the dictionary :func:`dictionary` (the former default seed 0, 1, 42, 1234, and ``derive_seed`` of
the public role and link names, with the frame path's conditions), each aligned on ``seq`` (a generator seeded at
start-up: ``offset`` 0) or anchored on one of the first :data:`HEAD_ROWS` rows of its stream (reseeded later, by a
``Configure``). A frame's match is a normalised correlation <y, eps>/(|y| |eps|) above :data:`SIGMAS`/sqrt(k) and half the
value a true match has, sqrt(sigma_self^2 / (a + sigma_self^2 + sigma^2)): a wrong row's correlation is about
N(0, 1/k), so 7 sigma leaves about 1e-12 per comparison, and a batch's search makes about 10^5 of them. Frames whose
true match would not clear the bound with room to spare (little self-noise, or a noisy link) and frames without a
match pass unchanged. It then runs the inversion decoder (its
trained weights and its adapted judge) on the result, so where no seed is guessed it is exactly the inversion decoder.

Offline the frames carry no ``seq`` (the evaluator's seeds are the experimenter's, standing for an unpredictable
generator), so there it is the inversion decoder; it is not in the default zoo. Self-noise per resource element
(ofdm links) and keyed self-noise are passed through unchanged.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import torch

from diffsem.attacks.base import AttackResult
from diffsem.attacks.builtin import InversionDecoder
from diffsem.framepath import LEGIT, TX
from diffsem.seeds import derive_seed

BASES = (0, 1, 42, 1234)  # the former default seed, and the seeds people type
SNRS_DB = (0.0, 5.0, 10.0, 15.0, 20.0)  # the legitimate SNRs of the frame path's conditions people evaluate
NAMES = (TX, LEGIT, "receiver")  # public role and link names
HEAD_ROWS = 512  # rows of each stream kept to anchor a generator reseeded mid-run
ANCHORS = 4  # frames of a batch tried as the first ones after a reseed (a batch may straddle it)
SIGMAS = 7.0  # a match's correlation is at least this many standard deviations of a wrong row's (1/sqrt(k))
MARGIN = 3.0  # ... and a frame is tried only when a true match would clear that by this many more
RECENT_ROWS = 256  # rows kept behind a stream's position: frames arrive in seq order, give or take a batch
CHUNK_ROWS = 256  # rows drawn at a time (memory per stream: at most 3 x 256 rows of k float32)


def dictionary(t_star: int | None) -> list[int]:
    """The seeds the attack tries for frames at privacy level ``t_star``: :data:`BASES`, ``derive_seed(base, name)``
    of each public name, and the frame path's transmitter seeds ``derive_seed(base, "tx", snr_db, t_star)``."""
    seeds = list(BASES)
    for base in BASES:
        seeds += [derive_seed(base, name) for name in NAMES]
        if t_star is not None:
            seeds += [derive_seed(base, TX, snr, t_star) for snr in SNRS_DB]
    return list(dict.fromkeys(seeds))


class Stream:
    """One seed's self-noise stream, row by row: its head, and a window of recent rows as the seqs move on."""

    def __init__(self, seed: int, k: int):
        self.seed, self.k = seed, k
        self.gen = torch.Generator().manual_seed(seed)
        self.pos = 0  # rows drawn so far
        self.recent: deque[tuple[int, torch.Tensor]] = deque()  # (first row, chunk (m, k)), oldest first
        self._head: torch.Tensor | None = None

    @property
    def head(self) -> torch.Tensor:
        """The first :data:`HEAD_ROWS` rows (HEAD_ROWS, k), drawn from a fresh generator of the same seed."""
        if self._head is None:
            self._head = torch.randn((HEAD_ROWS, self.k), generator=torch.Generator().manual_seed(self.seed))
        return self._head

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        """Rows ``idx`` (B,) of the stream (B, k); NaN where a row lies behind the window (or is negative)."""
        want = int(idx.max()) + 1
        while self.pos < want:  # draw forward in chunks: the same numbers as the transmitter's per-batch draws
            m = CHUNK_ROWS
            self.recent.append((self.pos, torch.randn((m, self.k), generator=self.gen)))
            self.pos += m
            # drop a chunk only once RECENT_ROWS rows lie between its end and the newest chunk's start: a batch that
            # straddles a chunk boundary keeps its earlier rows
            while self.recent and self.recent[0][0] + len(self.recent[0][1]) <= self.pos - CHUNK_ROWS - RECENT_ROWS:
                self.recent.popleft()
        out = torch.full((len(idx), self.k), math.nan)
        for first, chunk in self.recent:
            inside = (idx >= first) & (idx < first + len(chunk))
            if inside.any():
                out[inside] = chunk[idx[inside] - first]
        return out


def correlation(y: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Row-wise normalised correlation of y and eps (B, k) -> (B,); 0 where eps is unknown (NaN)."""
    r = (y * eps).sum(1) / (y.norm(dim=1) * eps.norm(dim=1)).clamp_min(1e-12)
    return torch.nan_to_num(r, nan=0.0)


class Replayer:
    """Finds and subtracts replayable self-noise. Keeps the stream it has locked onto, ``(seed, offset)``, while it
    goes on matching; searches the dictionary (aligned, then anchored on the head) when it does not. A stream is
    kept per (seed, offset), each at its own position."""

    def __init__(self, k: int):
        self.k = k
        self.streams: dict[tuple[int, int], Stream] = {}
        self.locked: tuple[int, int] | None = None
        self.counts = {"frames": 0, "matched": 0}
        self.level_sums = {"in": 0.0, "out": 0.0}  # every frame's level as received, and after the removal

    def _stream(self, seed: int, offset: int = 0) -> Stream:
        if (seed, offset) not in self.streams:
            self.streams[(seed, offset)] = Stream(seed, self.k)
        return self.streams[(seed, offset)]

    def _rows(self, locked: tuple[int, int], seq: torch.Tensor) -> torch.Tensor:
        """The replayed eps (B, k) float64 of frames ``seq`` under ``locked`` = (seed, offset)."""
        return self._stream(*locked).rows(seq - locked[1]).to(torch.float64)

    def _search(self, y: torch.Tensor, seq: torch.Tensor, need: torch.Tensor, t_star: int | None
                ) -> tuple[int, int] | None:
        """The (seed, offset) under which most frames of the batch match (at least one), or None."""
        best, best_hits = None, 0
        for seed in dictionary(t_star):
            stream = self._stream(seed)
            hits = int((correlation(y, stream.rows(seq)) > need).sum())  # aligned: seeded at start-up
            if hits > best_hits:
                best, best_hits = (seed, 0), hits
            picks = torch.linspace(0, len(y) - 1, min(len(y), ANCHORS)).round().long()  # frames spread over the batch
            r = (y[picks] / y[picks].norm(dim=1, keepdim=True)) @ (stream.head / stream.head.norm(dim=1, keepdim=True)).T
            for i, row in enumerate(r.argmax(1).tolist()):  # anchored: frame picks[i] got row `row` of a new stream
                if float(r[i, row]) > float(need[picks[i]]):
                    offset = int(seq[picks[i]]) - row
                    hits = int((correlation(y, self._stream(seed, offset).rows(seq - offset)) > need).sum())
                    if hits > best_hits:
                        best, best_hits = (seed, offset), hits
        return best

    def strip(self, z: torch.Tensor, abar_eff: torch.Tensor, header: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, k) at abar_eff (B,) with the replayed self-noise removed where it matches: (z', abar_eff')."""
        seq = getattr(header, "seq", None)
        s2 = header.sigma_self2
        if seq is None or header.t_star is None or s2.dim() != 1 or getattr(header, "csi", None) is not None:
            return z, abar_eff  # offline (no seq), no self-noise, or per-RE self-noise: nothing to replay
        a = float(header.a)
        s2 = s2.to(torch.float64)
        total = a / abar_eff.to(torch.float64).clamp_min(1e-12)  # a + sigma_self^2 + sigma^2 per frame
        y = z.to(torch.float64) * total.sqrt()[:, None]
        expected = (s2 / total).clamp_min(0).sqrt()  # a true match's correlation
        floor = SIGMAS / math.sqrt(self.k)
        need = torch.clamp(0.5 * expected, min=floor)
        usable = expected > floor + MARGIN / math.sqrt(self.k)
        self.counts["frames"] += len(z)
        self.level_sums["in"] += float(abar_eff.sum())
        if not usable.any():
            self.level_sums["out"] += float(abar_eff.sum())
            return z, abar_eff
        seq = seq.to(torch.long)
        eps = torch.full_like(y, math.nan)
        if self.locked is not None:
            eps = self._rows(self.locked, seq)
        matched = (correlation(y, eps) > need) & usable
        if int(matched.sum()) * 2 < int(usable.sum()):  # lost the stream (reseeded?) or never had one
            self.locked = self._search(y.float(), seq, need.float(), header.t_star)
            if self.locked is not None:
                eps = self._rows(self.locked, seq)
                matched = (correlation(y, eps) > need) & usable
        if not matched.any():
            self.level_sums["out"] += float(abar_eff.sum())
            return z, abar_eff
        self.counts["matched"] += int(matched.sum())
        y2 = y - s2.sqrt()[:, None] * torch.nan_to_num(eps)
        left = (total - s2).clamp_min(a + 1e-9)  # a + sigma^2: the listener's own channel noise stays
        new_total = torch.where(matched, left, total)
        level = torch.where(matched, (a / new_total).to(abar_eff.dtype), abar_eff)
        self.level_sums["out"] += float(level.sum())
        out = torch.where(matched[:, None], y2 / new_total.sqrt()[:, None], z.to(torch.float64))
        return out.to(z.dtype), level


class NoiseReplay(InversionDecoder):
    """Replays guessable self-noise seeds on the frames' ``seq``, subtracts the match, then inverts (module docstring).
    Uses the inversion decoder's trained weights and adapted judge; :meth:`details` reports what it matched."""

    name = "noise-replay"
    weights_of = "inversion-decoder"
    in_default_zoo = False  # offline it is the inversion decoder (no seq): it would only repeat its row

    def __init__(self, bundle: Any, **options: Any):
        super().__init__(bundle, **options)
        self.replayer = Replayer(bundle.cfg.k)

    def attack(self, z: torch.Tensor, abar_eff: torch.Tensor, header: Any) -> AttackResult:
        z, abar_eff = self.replayer.strip(z, abar_eff, header)
        return super().attack(z, abar_eff, header)

    def details(self) -> dict[str, str]:
        """Frames seen and matched so far, the stream it holds (seed, offset), and the sums of every frame's level as
        received and after the removal (a run's mean level: the difference of two readings over its frames)."""
        r = self.replayer
        out = {"replay_frames": str(r.counts["frames"]), "replay_matched": str(r.counts["matched"]),
               "replay_level_in_sum": f"{r.level_sums['in']:.6f}", "replay_level_out_sum": f"{r.level_sums['out']:.6f}"}
        if r.locked is not None:
            out |= {"replay_seed": str(r.locked[0]), "replay_offset": str(r.locked[1])}
        return out
