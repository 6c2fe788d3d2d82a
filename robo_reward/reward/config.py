"""Configuration of the stage-aware process reward model (draccus dataclass, YAML-loadable)."""

from __future__ import annotations

from dataclasses import dataclass, field

from robo_reward.utils import NameList


@dataclass
class RewardModelConfig:
    cameras: NameList = field(default_factory=NameList)
    """Camera views the model reads, in order (default: every observation.images.* camera of the
    training dataset, sorted by name)."""
    image_size: int = 64
    """Square input resolution; frames are made square by ``resize`` and resized to it."""
    resize: str = "crop"
    """How a non-square camera frame becomes the square input: crop (the centred square of the
    shorter side) or letterbox (black bars); recorded with the model, so training, evaluation, RL
    and deploy make the same picture."""
    window: int = 8
    """Frames per causal window (T)."""
    frame_gap: int = 3
    """Dataset frames between consecutive window frames."""
    dim: int = 128
    """Token width of the encoder, fusion and temporal transformer."""
    temporal_layers: int = 2
    """Causal transformer layers."""
    heads: int = 4
    """Attention heads (fusion and temporal)."""
    encoder: str = "cnn"
    """Per-view encoder: cnn (small, trained from scratch), resnet18 (torchvision), or clip / siglip
    (a vision tower through transformers)."""
    encoder_weights: str = ""
    """resnet18: a local .pth of ImageNet weights (default: torchvision's cache if present).
    clip/siglip: a local model directory (required; nothing is downloaded)."""
    encoder_config: dict | None = None
    """clip/siglip: the tower's architecture, filled in at training time so a saved run loads
    without the weights directory."""
    freeze_encoder: bool = False
    """Keep the pretrained trunk fixed."""
    cache_features: bool = False
    """With a frozen pretrained encoder: compute its features once, cache them to disk in the run
    directory, and train the rest on them."""
    stage_head: bool = True
    """Predict stage logits + within-stage tau (SARM). False: regress progress directly."""
    contrastive_weight: float = 0.5
    """Weight of the contrastive stage-alignment loss (0 disables it)."""
    hop_weight: float = 0.5
    """Weight of the pairwise hop loss."""
    success_weight: float = 0.2
    """Weight of the success head's loss."""
    view_dropout: float = 0.25
    """Chance of hiding each view during training (at least one view always stays)."""
    rewind_prob: float = 0.3
    """Chance a training window is a rewind: played forward, then backward."""
    pause_prob: float = 0.0
    """Chance a (forward) training window ends in a pause: its last frames repeat an earlier one,
    labelled as that frame, so stillness does not advance the stage. Off by default: at 0.2 on
    pick_place it did not fix the stop-short demos it was meant for (stage accuracy 0.855 vs 0.876,
    VOC- -0.987 vs -0.973; benchmarks/results/reward_pick_place_pause.json)."""
    use_state: bool = False
    """Also read proprioception (the dataset's ``observation.state``, the sim's ``agent_pos``):
    each frame's state, normalised with the training set's statistics, is embedded and added to
    that frame's fused view token. A slow start of a stage (a lift at half speed) moves the arm a
    pixel at 64x64 but is plain in joint space."""
    temperature: float = 0.1
    """InfoNCE temperature for stage prototypes."""
    triplet_margin: float = 0.2
    """Margin of the triplet term against the adjacent (near-miss) stage prototypes."""
    # filled from the dataset at training time
    stage_names: list[str] = field(default_factory=lambda: ["task"])
    """Stage names, in order (from the dataset's annotations)."""
    temporal_proportions: list[float] = field(default_factory=lambda: [1.0])
    """a_k per stage (from meta/temporal_proportions_sparse.json)."""
    state_dim: int = 0
    """With use_state: the width of observation.state (from the dataset)."""
    refit_head: bool = False
    """Set by a refit on rollouts (``robo-reward refit-reward``, ``rl --refit-every``): a
    success-against-failure discriminator D on the hidden state scales the progress,
    ``progress = progress_stage * sigmoid(D(h))`` (DrS-style), still a function of the window."""

    def __post_init__(self) -> None:
        self.cameras = NameList.parse(self.cameras)
        if self.resize not in ("crop", "letterbox"):
            raise ValueError(f"resize: {self.resize!r}; expected crop or letterbox")
        if self.window < 1 or self.frame_gap < 1:
            raise ValueError(f"window/frame_gap: {self.window}/{self.frame_gap}; expected >= 1 each")
        if self.dim % self.heads:
            raise ValueError(f"dim: {self.dim} is not divisible by heads={self.heads}")
        from robo_reward.reward.encoders import ENCODERS

        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder: {self.encoder!r}; expected one of {ENCODERS.names()}")
        if len(self.stage_names) != len(self.temporal_proportions):
            raise ValueError(f"stage_names ({len(self.stage_names)}) and temporal_proportions "
                             f"({len(self.temporal_proportions)}) differ in length")
        if self.cache_features and not (self.encoder != "cnn" and self.freeze_encoder):
            raise ValueError("cache_features: needs a pretrained encoder (resnet18, clip or siglip) and "
                             "freeze_encoder=true (a trained encoder's features change every step)")
        if not (0.0 <= self.view_dropout < 1.0):
            raise ValueError(f"view_dropout: {self.view_dropout}; expected in [0, 1)")
        if self.state_dim < 0 or (self.state_dim > 0 and not self.use_state):
            raise ValueError(f"state_dim: {self.state_dim}; expected 0, or > 0 only with use_state=true")
        for name in ("rewind_prob", "pause_prob"):
            if not (0.0 <= getattr(self, name) <= 1.0):
                raise ValueError(f"{name}: {getattr(self, name)}; expected in [0, 1]")

    @property
    def num_stages(self) -> int:
        return len(self.stage_names)
