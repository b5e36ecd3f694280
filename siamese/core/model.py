"""The 19-layer siamese network of the spec, its two heads and their losses.

Read top to bottom: the embedding network C, then the siamese wrapper that shares it
between both images of a pair, then the losses.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from siamese.core.spec import (
    FEATURE_DIM,
    HEADS,
    SPEC_IMAGE_SIZE,
    VARIANTS,
    higher_is_same,
    image_size_problem,
    model_name,
)


@dataclass(frozen=True)
class ModelConfig:
    variant: str = "bce"
    image_size: int = SPEC_IMAGE_SIZE  # square input; the flatten size follows from it
    margin: float = 1.0  # contrastive only
    head: str = "concat"  # bce only: one of HEADS

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; choose one of {', '.join(HEADS)}")
        if self.variant != "bce" and self.head != "concat":
            raise ValueError(f"the {self.head} head is a bce head; the contrastive variant compares distances")
        if problem := image_size_problem(self.image_size):
            raise ValueError(f"image_size: {problem}")
        if not isinstance(self.margin, int | float) or not 0 < self.margin < math.inf:
            raise ValueError(f"margin must be a positive finite number, got {self.margin!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def name(self) -> str:
        """The variant, and the head when it is not the spec's: what every output is labelled with."""
        return model_name(self.variant, self.head)


class EmbeddingNet(nn.Sequential):
    """Network C: 4 conv blocks and one fully connected block, 19 layers, 1024-d output."""

    def __init__(self, image_size: int = SPEC_IMAGE_SIZE):
        side = image_size // 8  # three 2x2 max-pools
        super().__init__(
            nn.Conv2d(3, 64, 5, stride=1, padding=2),  # (N, 64, S, S)
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(64),
            nn.MaxPool2d(2, 2),  # (N, 64, S/2, S/2)
            nn.Conv2d(64, 128, 5, stride=1, padding=2),  # (N, 128, S/2, S/2)
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(128),
            nn.MaxPool2d(2, 2),  # (N, 128, S/4, S/4)
            nn.Conv2d(128, 256, 3, stride=1, padding=1),  # (N, 256, S/4, S/4)
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(256),
            nn.MaxPool2d(2, 2),  # (N, 256, S/8, S/8)
            nn.Conv2d(256, 512, 3, stride=1, padding=1),  # (N, 512, S/8, S/8)
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(512),
            nn.Flatten(),  # (N, 512*S/8*S/8) = (N, 131072) at S=128
            nn.Linear(512 * side * side, FEATURE_DIM),  # (N, 1024)
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(FEATURE_DIM),
        )
        self.image_size = image_size


def pair_distance(f1: torch.Tensor, f2: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Euclidean distance with a finite (zero) gradient when f1 == f2.

    torch.norm's gradient is (f1 - f2) / ||f1 - f2||, which is NaN at zero distance;
    the eps under the square root keeps it finite and moves D by at most sqrt(eps).
    """
    return torch.sqrt(((f1 - f2) ** 2).sum(dim=1) + eps)


def compare_features(head: nn.Linear | None, f1: torch.Tensor, f2: torch.Tensor, kind: str = "concat") -> torch.Tensor:
    """The variant's raw output per pair: the BCE head's logit, or the L2 distance (no head)."""
    if head is None:
        return pair_distance(f1, f2)  # (N,) distances
    if kind == "diff-prod":
        return head(torch.cat([(f1 - f2).abs(), f1 * f2], dim=1)).squeeze(1)  # (N,) logits, symmetric in a, b
    return head(torch.cat([f1, f2], dim=1)).squeeze(1)  # (N,) logits


def to_score(head: nn.Linear | None, raw: torch.Tensor) -> torch.Tensor:
    """What a user reads: a probability of "same person" (bce) or the distance (contrastive)."""
    return torch.sigmoid(raw) if head is not None else raw


class SiameseNet(nn.Module):
    """One shared EmbeddingNet; both images of a pair go through it in one batched call.

    forward(a, b) returns, per pair, the BCE variant's logit or the contrastive variant's
    L2 distance, both of shape (N,). `score()` turns that into what a user reads:
    a probability of "same person" (bce) or the distance itself (contrastive).
    """

    def __init__(
        self, variant: str = "bce", image_size: int = SPEC_IMAGE_SIZE, margin: float = 1.0, head: str = "concat"
    ):
        super().__init__()
        self.config = ModelConfig(variant, image_size, margin, head)
        self.embedding = EmbeddingNet(image_size)
        self.head = nn.Linear(2 * FEATURE_DIM, 1) if variant == "bce" else None

    @classmethod
    def from_config(cls, config: ModelConfig) -> SiameseNet:
        return cls(config.variant, config.image_size, config.margin, config.head)

    @property
    def variant(self) -> str:
        return self.config.variant

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.embedding(images)  # (N, 1024)

    def compare(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        return compare_features(self.head, f1, f2, self.config.head)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        features = self.embed(torch.cat([a, b]))  # (2N, 1024): one pass keeps BN statistics shared
        f1, f2 = features.chunk(2)
        return self.compare(f1, f2)

    def score(self, raw: torch.Tensor) -> torch.Tensor:
        return to_score(self.head, raw)

    @property
    def higher_is_same(self) -> bool:
        return higher_is_same(self.variant)


def contrastive_loss(
    distance: torch.Tensor, same: torch.Tensor, margin: float = 1.0, reduce: bool = True
) -> torch.Tensor:
    """L = y*D^2 + (1-y)*max(0, m - D)^2, averaged over the batch (y = 1: same person)."""
    same = same.to(distance.dtype)
    loss = same * distance**2 + (1 - same) * F.relu(margin - distance) ** 2
    return loss.mean() if reduce else loss


def pair_losses(model: SiameseNet, raw: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """The variant's loss of each pair, (N,): BCE on the logit, or the contrastive loss on the distance."""
    if model.variant == "bce":
        return F.binary_cross_entropy_with_logits(raw, same.to(raw.dtype), reduction="none")
    return contrastive_loss(raw, same, model.config.margin, reduce=False)


def pair_loss(model: SiameseNet, raw: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    return pair_losses(model, raw, same).mean()


NEGATIVES = ("all", "hard")


def all_pairs_loss(
    model: SiameseNet, features: torch.Tensor, identity: torch.Tensor, negatives: str = "all"
) -> torch.Tensor:
    """The variant's loss over every pair of a batch of B embedded images, (B, 1024) -> scalar.

    The B(B-1)/2 pairs hold far more different-person pairs than same-person ones, so the two
    kinds are averaged apart and weighted equally. negatives="hard" keeps, of the different
    pairs, only the ones the model finds most alike, as many as there are same pairs.
    """
    if negatives not in NEGATIVES:
        raise ValueError(f"unknown negatives {negatives!r}; choose one of {', '.join(NEGATIVES)}")
    i, j = torch.triu_indices(len(identity), len(identity), offset=1, device=features.device)
    raw = model.compare(features[i], features[j]).float()  # (P,) logits or distances
    same = identity[i] == identity[j]
    losses = pair_losses(model, raw, same.long())
    positive, negative = losses[same], losses[~same]
    if negatives == "hard" and len(positive):
        alike = raw[~same] if model.higher_is_same else -raw[~same]
        negative = negative[alike.topk(min(len(positive), len(negative))).indices]
    parts = [part.mean() for part in (positive, negative) if len(part)]
    return torch.stack(parts).mean()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_image(image_size: int = SPEC_IMAGE_SIZE) -> int:
    """Multiply-adds x 2 of the convolutions and the FC layer (BN, ReLU and pooling are
    negligible): 3.31 GFLOP at 128x128."""
    s = image_size
    convs = [(3, 64, 5, s), (64, 128, 5, s // 2), (128, 256, 3, s // 4), (256, 512, 3, s // 8)]
    conv_flops = sum(2 * cin * cout * k * k * side * side for cin, cout, k, side in convs)
    return conv_flops + 2 * 512 * (s // 8) ** 2 * FEATURE_DIM
