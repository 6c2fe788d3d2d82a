"""Per-view image encoders of the reward model, registered by name (``--model.encoder=``):
``cnn`` (small, trained from scratch: the default), ``resnet18`` (torchvision) and ``clip`` /
``siglip`` (transformers). Pretrained weights load from local files only; nothing is downloaded.

A new encoder is one function ``@ENCODERS.register("name")`` taking the :class:`RewardModelConfig`
and returning a module with ``net`` (the trunk, frozen by ``freeze_encoder``), ``out`` (the
projection to ``dim``) and, for feature caching, ``trunk(x)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from robo_reward.registry import Registry

if TYPE_CHECKING:
    from robo_reward.reward.config import RewardModelConfig

ENCODERS: Registry[Callable[[RewardModelConfig], nn.Module]] = Registry("encoder")
"""Encoder name -> factory taking the model config."""


class ConvEncoder(nn.Module):
    """Small CNN trained from scratch: 64x64 -> 4x4 -> pooled ``dim`` vector."""

    def __init__(self, dim: int):
        super().__init__()
        chans = [3, 32, 64, 128, 128]
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 5 if i == 0 else 3, stride=2, padding=2 if i == 0 else 1),
                       nn.GroupNorm(8, chans[i + 1]), nn.SiLU()]
        self.net = nn.Sequential(*layers)
        self.out = nn.Linear(chans[-1] * 2, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.net(x)
        return self.out(torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1))


class ResNetEncoder(nn.Module):
    """torchvision ResNet-18 trunk. ImageNet weights load only from disk: ``weights`` (a .pth
    state dict) or torchvision's cache in ``$TORCH_HOME``; nothing is downloaded (the hub is
    unreachable here). Without either it starts from random weights, with a warning."""

    def __init__(self, dim: int, weights: str = ""):
        super().__init__()
        import logging

        import torchvision

        net = torchvision.models.resnet18()
        path = Path(weights) if weights else (Path(torch.hub.get_dir()) / "checkpoints" /
                                              Path(torchvision.models.ResNet18_Weights.DEFAULT.url).name)
        if path.is_file():
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        elif weights:
            raise FileNotFoundError(f"encoder_weights: {weights} does not exist; expected a resnet18 .pth state dict")
        else:
            logging.getLogger(__name__).warning("resnet18: no local ImageNet weights at %s; random init", path)
        net.fc = nn.Identity()
        self.net = net
        self.out = nn.Linear(512, dim)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """512-d features (what the feature cache stores when the trunk is frozen)."""
        return self.net((x - self.mean) / self.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.trunk(x))


# image normalisation of each family's own preprocessing (overridden by a preprocessor_config.json)
HF_MEAN_STD = {"clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
               "siglip": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}


class HFVisionEncoder(nn.Module):
    """CLIP or SigLIP vision tower through ``transformers``, from a local directory only
    (``save_pretrained`` output, or a downloaded hub snapshot of a full CLIP/SigLIP model: its vision
    half is used); nothing is downloaded. Frames are resized to the tower's input size and
    normalised as its preprocessing does; the pooled output is projected to ``dim``.

    ``hf_config`` (kept in the run's config as ``encoder_config``) rebuilds the same architecture
    and preprocessing when a saved reward model is loaded, so a trained run does not need the
    original weights directory."""

    def __init__(self, dim: int, kind: str, weights: str = "", hf_config: dict | None = None):
        super().__init__()
        try:
            import transformers
        except ImportError as e:  # pragma: no cover - setup.sh installs it
            raise ImportError(f"encoder={kind} needs transformers: pip install 'transformers>=5' "
                              "(scripts/setup.sh installs it)") from e
        model_cls = transformers.CLIPVisionModel if kind == "clip" else transformers.SiglipVisionModel
        config_cls = transformers.CLIPVisionConfig if kind == "clip" else transformers.SiglipVisionConfig
        mean, std = HF_MEAN_STD[kind]
        if hf_config:  # a saved run: the architecture only (its weights come with the run)
            net = model_cls(config_cls(**hf_config["tower"]))
            mean, std = hf_config["image_mean"], hf_config["image_std"]
        elif weights:
            path = Path(weights)
            if not (path / "config.json").is_file():
                raise FileNotFoundError(f"encoder_weights: {weights} has no config.json; expected a local {kind} "
                                        "model directory (save_pretrained output); nothing is downloaded")
            net = model_cls.from_pretrained(path, local_files_only=True)
            pre = path / "preprocessor_config.json"
            if pre.is_file():
                prep = json.loads(pre.read_text())
                mean, std = prep.get("image_mean", mean), prep.get("image_std", std)
        else:
            raise ValueError(f"encoder={kind}: encoder_weights is empty; expected a local {kind} model directory")
        self.net = net
        known = config_cls().to_dict()
        self.hf_config = {"tower": {k: v for k, v in net.config.to_dict().items()
                                    if k in known and k not in ("transformers_version", "architectures")},
                          "image_mean": list(mean), "image_std": list(std)}
        self.image_size = int(net.config.image_size)
        self.out = nn.Linear(int(net.config.hidden_size), dim)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled tower features (what the feature cache stores when the tower is frozen)."""
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return self.net(pixel_values=(x - self.mean) / self.std).pooler_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.trunk(x))


@ENCODERS.register("cnn")
def cnn_encoder(config: RewardModelConfig) -> nn.Module:
    return ConvEncoder(config.dim)


@ENCODERS.register("resnet18")
def resnet18_encoder(config: RewardModelConfig) -> nn.Module:
    return ResNetEncoder(config.dim, config.encoder_weights)


def hf_encoder(config: RewardModelConfig) -> nn.Module:
    enc = HFVisionEncoder(config.dim, config.encoder, config.encoder_weights, config.encoder_config)
    config.encoder_config = enc.hf_config  # saved with the run: loading rebuilds it without the weights dir
    return enc


ENCODERS.add("clip", hf_encoder)
ENCODERS.add("siglip", hf_encoder)


def make_encoder(config: RewardModelConfig) -> nn.Module:
    """The per-view encoder ``config.encoder`` names (a key of :data:`ENCODERS`)."""
    return ENCODERS.get(config.encoder)(config)
