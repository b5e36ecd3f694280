"""The two graphs that are exported: they take images exactly as a client has them.

Inputs are uint8 NHWC RGB at the training image size; the conversion to float, the scaling
and the normalisation happen inside the graph, so a client in any runtime only decodes and
resizes. Outputs are float32 whatever the compute dtype.
"""

from __future__ import annotations

import torch
from torch import nn

from siamese.errors import SiameseError
from siamese.model import ModelConfig, SiameseNet, compare_features, to_score
from siamese.preprocess import Normalization

GRAPHS = ("embedding", "pair", "compare")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
INPUT_NAMES = {
    "embedding": ["images"],
    "pair": ["image_a", "image_b"],
    "compare": ["features_a", "features_b"],
}
OUTPUT_NAMES = {"embedding": ["features"], "pair": ["score", "same"], "compare": ["score", "same"]}


class Preprocess(nn.Module):
    def __init__(self, norm: Normalization, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype
        self.register_buffer("mean", torch.tensor(norm.mean).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(norm.std).view(1, 3, 1, 1) * 255)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float()  # (N, 3, S, S), 0..255
        return ((x - self.mean) / self.std).to(self.dtype)  # == (x / 255 - mean) / std


class EmbeddingGraph(nn.Module):
    """(N, S, S, 3) uint8 -> (N, 1024) float32 features."""

    def __init__(self, model: SiameseNet, norm: Normalization, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.preprocess = Preprocess(norm, dtype)
        self.embedding = model.embedding

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.preprocess(images)).float()


class CompareGraph(nn.Module):
    """(N, 1024) float32 features twice -> score and same: pairs of embedded images, each
    image embedded once however many pairs it is in."""

    def __init__(self, model: SiameseNet, threshold: float):
        super().__init__()
        self.head = model.head  # only the head: this graph carries no convolution weights
        self.higher_is_same = model.higher_is_same
        self.register_buffer("threshold", torch.tensor(float(threshold)))

    def forward(self, features_a: torch.Tensor, features_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        score = to_score(self.head, compare_features(self.head, features_a, features_b))  # (N,)
        same = score > self.threshold if self.higher_is_same else score < self.threshold
        return score, same


class PairGraph(nn.Module):
    """(N, S, S, 3) uint8 twice -> score (N,) float32 and same (N,) bool at the stored threshold."""

    def __init__(self, model: SiameseNet, norm: Normalization, threshold: float, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.preprocess = Preprocess(norm, dtype)
        self.embedding = model.embedding
        self.decide = CompareGraph(model, threshold)

    def forward(self, image_a: torch.Tensor, image_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = image_a.shape[0]
        features = self.embedding(self.preprocess(torch.cat([image_a, image_b]))).float()  # (2N, 1024)
        # slicing, not chunk(2): chunk makes torch.export fix the batch size
        return self.decide(features[:n], features[n:])


def build_graphs(model: SiameseNet, norm: Normalization, threshold: float, dtype: str = "fp32") -> dict[str, nn.Module]:
    """The three deployable graphs around one network, in eval mode."""
    if dtype != "fp32":
        # the head and distance stay fp32 (the graphs cast features), the network runs in half
        model.embedding.to(DTYPES[dtype])
    return {
        "embedding": EmbeddingGraph(model, norm, DTYPES[dtype]).eval(),
        "pair": PairGraph(model, norm, threshold, DTYPES[dtype]).eval(),
        "compare": CompareGraph(model, threshold).eval(),
    }


def graphs_from_checkpoint(ckpt: dict, dtype: str = "fp32") -> dict[str, nn.Module]:
    if ckpt.get("threshold") is None:
        raise SiameseError("checkpoint has no decision threshold: training did not finish its evaluation")
    return build_graphs(
        model_from_checkpoint(ckpt), Normalization.from_dict(ckpt["normalization"]), ckpt["threshold"], dtype
    )


def graphs_from_export(folder) -> dict[str, nn.Module]:
    """Eager fp32 graphs rebuilt from an export's own weights (its pair.pt2 or TorchScript file),
    so that eager PyTorch runs exactly the artifact family the other runtimes run."""
    meta = folder.metadata
    model = SiameseNet(meta["variant"], meta["image_size"], meta["margin"])
    graphs = build_graphs(model, Normalization.from_dict(meta["normalization"]), meta["threshold"])
    formats = folder.formats()
    if "pt2" in formats:
        state = torch.export.load(str(folder.check("pair.pt2"))).state_dict
    elif "torchscript" in formats:
        state = torch.jit.load(str(folder.check("pair.torchscript.pt")), map_location="cpu").state_dict()
    else:
        raise SiameseError(f"{folder.path}: eager PyTorch needs the pt2 or torchscript artifact of the export")
    missing, unexpected = graphs["pair"].load_state_dict(state, strict=False)
    if [k for k in missing if not k.endswith("num_batches_tracked")] or unexpected:
        raise SiameseError(f"{folder.path}: weights do not fit the network ({missing[:2] + unexpected[:2]})")
    return graphs


def model_from_checkpoint(ckpt: dict) -> SiameseNet:
    model = SiameseNet.from_config(ModelConfig(**ckpt["model_config"]))
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise SiameseError(
            f"checkpoint weights do not fit a {model.config} network: {str(exc).splitlines()[0]}"
        ) from None
    return model.eval()
