"""Judge-free measures of what a reconstruction shows (docs/design.md §4): the class of its nearest neighbours in a
labelled reference set that no judge trained on.

- **k-NN in the robust judge's feature space** (``knn``): cosine similarity between the hidden layer of the
  ``robust`` judge (:class:`~diffsem.models.StridedJudge.features`) of the reconstruction and of each reference
  image; the label is the majority of the :data:`K` most similar.
- **SSIM nearest neighbours** (``ssim-nn``): the same vote over the :data:`K` reference images of highest SSIM to
  the reconstruction (Wang et al. 2004, eq. 13; an 11x11 Gaussian window of σ = 1.5 px, C1 = (0.01 L)²,
  C2 = (0.03 L)², L = 1, reflect padding and the mean over the image: torchmetrics' definition, which the tables'
  SSIM column uses).

A reader that needs no classifier at all: a reconstruction whose nearest neighbours by SSIM are of its class
resembles images of that class in pixels and structure; one labelled by the robust judge's neighbours resembles them
in the features a robust classifier keeps. Ties in the vote go to the class with the larger summed similarity.

The reference set is the first :data:`REFERENCE_SIZE` images of the attacker's auxiliary split of the training set:
labelled, never seen by a judge (judges train on the transmitter's split), and disjoint from the test images that
are attacked.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from diffsem.config import ModelConfig
from diffsem.data import load_split, transmitter_split

K = 5
REFERENCE_SIZE = 1000
SSIM_SIGMA, SSIM_SIDE = 1.5, 11
C1, C2 = 0.01 ** 2, 0.03 ** 2
MEASURES = ("knn", "ssim-nn")


def reference_set(dataset: str, data_dir: Path | None = None, n: int = REFERENCE_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` images (n, 1, 28, 28) of the auxiliary split and their labels (n,)."""
    images, labels = load_split(dataset, "train", data_dir)
    _, aux = transmitter_split(len(images), seed=0)
    return images[aux[:n]], labels[aux[:n]]


def _band(padded: int, out: int) -> torch.Tensor:
    """The 'valid' 1-D Gaussian filter as a (padded, out) matrix: a row of pixels (.., padded) @ it = filtered."""
    r = SSIM_SIDE // 2
    g = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32).pow(2) / (2 * SSIM_SIGMA ** 2))
    g = g / g.sum()
    m = torch.zeros(padded, out)
    for j in range(out):
        m[j:j + SSIM_SIDE, j] = g
    return m


def _blur(x: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter, 'valid': (..., H + 10, W + 10) -> (..., H, W), as two matrix products (far faster
    on a CPU than a one-channel convolution over millions of small images)."""
    bh, bw = _band(x.shape[-2], x.shape[-2] - SSIM_SIDE + 1), _band(x.shape[-1], x.shape[-1] - SSIM_SIDE + 1)
    return (x @ bw).transpose(-1, -2).matmul(bh).transpose(-1, -2)


def _pad(x: torch.Tensor) -> torch.Tensor:
    p = SSIM_SIDE // 2
    return F.pad(x, (p, p, p, p), mode="reflect")


@torch.no_grad()
def ssim_matrix(x: torch.Tensor, refs: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """SSIM (N, M) between every image of x (N, 1, 28, 28) and every reference (M, 1, 28, 28), both in [0, 1]."""
    xp, rp = _pad(x.float()), _pad(refs.float())
    mu_x, mu_r = _blur(xp), _blur(rp)  # local means (N or M, 1, 28, 28)
    var_x, var_r = _blur(xp * xp) - mu_x ** 2, _blur(rp * rp) - mu_r ** 2
    out = torch.empty(len(x), len(refs))
    for i in range(0, len(x), chunk):
        n = min(chunk, len(x) - i)
        prod = xp[i:i + n, None, 0] * rp[None, :, 0]  # (n, M, 38, 38)
        cov = _blur(prod) - mu_x[i:i + n] * mu_r[:, 0][None]
        mx, vx = mu_x[i:i + n], var_x[i:i + n]  # (n, 1, 28, 28), broadcast over M
        num = (2 * mx * mu_r[:, 0][None] + C1) * (2 * cov + C2)
        den = (mx ** 2 + mu_r[:, 0][None] ** 2 + C1) * (vx + var_r[:, 0][None] + C2)
        out[i:i + n] = (num / den).mean((2, 3))
    return out


def vote(similarity: torch.Tensor, ref_labels: torch.Tensor, k: int = K, classes: int = 10) -> torch.Tensor:
    """Majority label (N,) of the ``k`` most similar references per row of ``similarity`` (N, M); ties go to the
    class with the larger summed similarity among the k."""
    sim, idx = similarity.topk(k, dim=1)
    onehot = F.one_hot(ref_labels[idx], classes).float()  # (N, k, classes)
    counts = onehot.sum(1)
    summed = (onehot * sim[..., None]).sum(1)
    tie_break = summed / (summed.abs().amax(1, keepdim=True) + 1.0) * 0.5  # < 1: never outweighs a whole vote
    return (counts + tie_break).argmax(1)


class Neighbours:
    """The judge-free labels of reconstructions: ``knn`` (in ``feature_judge``'s hidden layer; it needs
    ``features``) and ``ssim-nn``, against references (M, 1, 28, 28) with labels (M,)."""

    def __init__(self, feature_judge: nn.Module, refs: torch.Tensor, ref_labels: torch.Tensor, k: int = K,
                 classes: int = 10):
        if not hasattr(feature_judge, "features"):
            raise TypeError(f"{type(feature_judge).__name__} has no features(); the k-NN measure needs the robust judge")
        self.judge = feature_judge.eval()
        self.refs, self.ref_labels, self.k, self.classes = refs.float(), ref_labels, k, classes
        self.ref_features = self._features(self.refs)

    @torch.no_grad()
    def _features(self, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
        dev = next(self.judge.parameters()).device
        f = torch.cat([self.judge.features(x[i:i + batch].to(dev)).cpu() for i in range(0, len(x), batch)])
        return F.normalize(f, dim=1)

    def labels(self, reconstructions: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"knn": (N,), "ssim-nn": (N,)}`` int64 labels of reconstructions (N, 1, 28, 28) in [0, 1]."""
        x = reconstructions.float().clamp(0, 1).cpu()
        knn = vote(self._features(x) @ self.ref_features.T, self.ref_labels, self.k, self.classes)
        return {"knn": knn, "ssim-nn": vote(ssim_matrix(x, self.refs), self.ref_labels, self.k, self.classes)}


def robust_neighbours(cfg: ModelConfig, checkpoints: Path, data_dir: Path | None = None) -> Neighbours:
    """The judge-free measures over the :func:`reference_set`, in the feature space of the robust judge committed
    under ``checkpoints/judges`` (refused in one line when it is missing or made for another data set or k)."""
    from diffsem.judges import judge_path, load_judge

    robust, _ = load_judge(judge_path(checkpoints, "robust"), cfg)
    return Neighbours(robust, *reference_set(cfg.dataset, data_dir), classes=cfg.num_classes)
