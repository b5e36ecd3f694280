"""The two graphs that are exported: they take images exactly as a client has them.

Inputs are uint8 NHWC RGB at the training image size; the conversion to float, the scaling
and the normalisation happen inside the graph, so a client in any runtime only decodes and
resizes. Outputs are float32 whatever the compute dtype.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from torch import nn

from siamese.artifacts.checkpoint import Checkpoint
from siamese.artifacts.folder import WEIGHTS, ExportFolder
from siamese.core.errors import SiameseError, first_line
from siamese.core.model import ModelConfig, SiameseNet, compare_features, to_score
from siamese.core.preprocess import Normalization
from siamese.core.spec import FEATURE_DIM, GRAPH_INPUTS, GRAPH_OUTPUTS, MAX_BATCH

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
INPUT_NAMES, OUTPUT_NAMES = GRAPH_INPUTS, GRAPH_OUTPUTS


class Preprocess(nn.Module):
    def __init__(self, norm: Normalization, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype
        # the NHWC input permuted is channels_last in memory; convolutions get what this says
        self.memory_format = torch.contiguous_format
        self.register_buffer("mean", torch.tensor(norm.mean).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(norm.std).view(1, 3, 1, 1) * 255)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float().contiguous(memory_format=self.memory_format)  # (N, 3, S, S), 0..255
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
        self.head_kind = model.config.head
        self.higher_is_same = model.higher_is_same
        self.register_buffer("threshold", torch.tensor(float(threshold)))

    def forward(self, features_a: torch.Tensor, features_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        score = to_score(self.head, compare_features(self.head, features_a, features_b, self.head_kind))  # (N,)
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


def graphs_from_checkpoint(ckpt: Checkpoint, dtype: str = "fp32") -> dict[str, nn.Module]:
    if ckpt.threshold is None:
        raise SiameseError("checkpoint has no decision threshold: training did not finish its evaluation")
    return build_graphs(ckpt.build_model(), ckpt.normalization, ckpt.threshold, dtype)


def save_weights(state_dict: dict, config: ModelConfig, path: Path) -> None:
    """A network's fp32 weights as tensors only, so loading them can never run code."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    state = {k: v.detach().float().contiguous() for k, v in state_dict.items() if v.is_floating_point()}
    metadata = {"format": "siamese-weights", "model_config": json.dumps(config.to_dict())}
    try:
        save_file(state, str(path), metadata=metadata)
    except SafetensorError as exc:  # a full disk arrives as "I/O error: No space left on device (os error 28)"
        code = re.search(r"\(os error (\d+)\)", str(exc))
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from None
    path.chmod(0o644)  # readable like the other artifacts (the file is created private)


def graphs_from_weights(export: ExportFolder) -> dict[str, nn.Module]:
    """The fp32 graphs of an export, rebuilt from its `weights.safetensors` (no pickle, no code)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not export.has(WEIGHTS):
        raise SiameseError(f"{export.path}: has no {WEIGHTS} (written by siamese-export since 0.2); re-export it")
    meta = export.metadata
    model = SiameseNet(meta.variant, meta.image_size, meta.margin, meta.head)
    try:
        state = load_file(str(export.check(WEIGHTS)))
    except SafetensorError as exc:
        raise SiameseError(f"{export.path / WEIGHTS}: unreadable ({exc})") from None
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a tensor of another shape
        raise SiameseError(f"{export.path / WEIGHTS}: weights do not fit the network: {first_line(exc)}") from None
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SiameseError(f"{export.path / WEIGHTS}: weights do not fit the network ({(missing + unexpected)[:3]})")
    return build_graphs(model.eval(), meta.normalization, meta.threshold)


def example_inputs(graph: str, image_size: int, batch: int = 2) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    if graph == "compare":
        return tuple(torch.randn(batch, FEATURE_DIM, generator=g) for _ in INPUT_NAMES[graph])
    return tuple(
        torch.randint(0, 256, (batch, image_size, image_size, 3), dtype=torch.uint8, generator=g)
        for _ in INPUT_NAMES[graph]
    )


def dynamic_batch(graph: str) -> dict:
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    return {name: {0: batch} for name in INPUT_NAMES[graph]}
