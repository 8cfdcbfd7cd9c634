"""Training is bit-identical to the code that trained the committed checkpoints: a tiny configuration of
``diffsem train`` and of each trainable attack gives float32 weights whose SHA-256 equal those the pre-refactor code
(commit 36ca180, the same draws through five hand-written loops) gave with torch 2.13.0 on 2 CPU threads of the
earlier x86-64 CI host (on an AVX2-only host: what the same code gives there). A change in the order of random draws,
the loop or the samplers changes every digest. Floating point may differ on other CPUs or torch builds; there, rerun
the same configuration at 36ca180 (or eef4464) to renew the digests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from diffsem.attacks import attack_class
from diffsem.data import load_split, transmitter_split
from diffsem.train import TrainConfig, train_all

TINY = TrainConfig(max_train=600, batch_size=128, epochs_encoder=1, epochs_channel_classifier=1, epochs_unet=1,
                   epochs_judge=1, epochs_eavesdropper=1)
DIGESTS = {
    "encoder": "7bdb4c29c600da5f8dceece6e9988c41402b00e717844c0ba69e38bbdeffe4a7",
    "classifier": "88bcdc60ddbe50775c4cf3056ea9b84c798c53a02d44c560f6fabff5aa2a9bd0",
    "channel_classifier": "d1af52b266dbe017fe12c558b72b2531bd4fbf296775be751df52a00800c099b",
    "unet": "b87221023f487507d3dda74a1ba16edab357865b937500694d4bf9e377ebdd2d",
    "judge": "5865cad3d460320854921c695e11b9f74d3475efda60c4c51cc5bd8d6237906c",
    "eavesdropper": "9eda1c14cd9664b63a2bbf5ac86bac66ca4ff1339a2917493783f29cafe25880",
    "inversion-decoder": "1996a06f6a25a361f28b4c142caf4bad78fba5f620aa4bf9643afc0775e5ab56",
    "inversion-decoder@10dB": "6ca7adec02fd0d73172a69581500bf8a28a9932464abadcba2c2a559f7afccaa",
    "adaptive-diffusion": "0584b9acaa78fd4e8e7f103294ee1069548efbc50ad410f0488a123bfc55a761",
}
# The same configuration on an AVX2-only host (AMD EPYC, 2026-12-06): what eef4464 gives there, the code that
# matched 36ca180 on the earlier host
AVX2_DIGESTS = {
    "encoder": "a28d35ecb5da63698624d6eb0dbccb25c3c19f05fd7aeb2ae1dc7765a8182358",
    "classifier": "2657227e251c67cd08e44e334a712c1104c9da9d396f99bb142f3e84b497d970",
    "channel_classifier": "a5cc3a60289b9af8c86fdc37e203be820ba99dd0021a4d4173837199d719e76d",
    "unet": "3b0171ad8d5c7d0bcbe26d74784493fdaa6a9d335880f0832932ca2401eeee6e",
    "judge": "179d4a1e610bc37e214738fe1fd149d1e507cbf2c9ef9fb3b599cba96eefeb29",
    "eavesdropper": "d27c7b59b6f03d11011d52faf38f2371708ce3af3d69f0b50fdac2b8d0fd189e",
    "inversion-decoder": "727065ea2f03fdc856bd9f8450484a61d55265e4ed9ba85a262cbd9a929eb87b",
    "inversion-decoder@10dB": "8c3a793b6a7fc24d77ca8a9faab6963a908d369df1791db5e1e8711c0770ecd4",
    "adaptive-diffusion": "e21dc15634dee318600a01c3a49ac614e89710761a475d91c187e4dcd4b7f878",
}
# Float reductions follow the kernels torch picks for the CPU (torch.backends.cpu.get_cpu_capability()), so the
# digests are kept per capability; DIGESTS were recorded against 36ca180 on the earlier CI host
BY_CAPABILITY = {"AVX2": AVX2_DIGESTS}


def digest(module: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def tiny_digests(out: Path) -> dict[str, str]:
    """Digests of the tiny bundle's parts, then of each trainable attack fitted on 300 auxiliary images for 1 epoch."""
    bundle = train_all(TINY, out)
    found = {part: digest(m) for part, m in bundle.modules().items()}
    images, labels = load_split("mnist", "train")
    aux = transmitter_split(len(images), seed=0)[1][:300]
    for key, name, options in [("inversion-decoder", "inversion-decoder", {}),
                               ("inversion-decoder@10dB", "inversion-decoder", {"train_snr_db": 10.0}),
                               ("adaptive-diffusion", "adaptive-diffusion", {})]:
        torch.manual_seed(0)
        att = attack_class(name)(bundle, **options)
        att.fit(images[aux], labels[aux], epochs=1, seed=0)
        found[key] = digest(att.module())
    return found


def test_tiny_training_gives_the_pre_refactor_weights_bit_for_bit(tmp_path: Path) -> None:
    capability = torch.backends.cpu.get_cpu_capability()
    assert tiny_digests(tmp_path / "ck") == BY_CAPABILITY.get(capability, DIGESTS), f"CPU capability {capability}"
    card = json.loads((tmp_path / "ck" / "encoder.json").read_text())
    assert set(card["dataset"]) == {"name", "sha256"}  # no path of the training host
