"""The spec's facts that every layer needs, with no torch: what the network takes and gives, and
how its two variants read a score. siamese.core.model builds the network from them; reading
an export (siamese.artifacts) checks its metadata against them."""

from __future__ import annotations

VARIANTS = ("bce", "contrastive")
# bce heads: "concat" is the spec's Linear(concat(f1, f2)); its logit is g(a) + h(b), which cannot
# compare the two faces (README). "diff-prod" is Linear(concat(|f1 - f2|, f1 * f2)): the same
# 2048 inputs and parameter count, one sigmoid node, but a function of how the features relate.
HEADS = ("concat", "diff-prod")
FEATURE_DIM = 1024  # the embedding network's output
SPEC_IMAGE_SIZE = 128  # the spec's input side; smaller sides make the proxies of recipe studies
# a square input side: three 2x2 max-pools need a multiple of 8
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE, IMAGE_SIZE_STEP = 8, 1024, 8


MAX_BATCH = 65536  # the largest batch every export's dynamic batch dimension takes
# the tensors of each deployable graph, by name, as every export format and server has them
GRAPH_INPUTS = {"embedding": ["images"], "pair": ["image_a", "image_b"], "compare": ["features_a", "features_b"]}
GRAPH_OUTPUTS = {"embedding": ["features"], "pair": ["score", "same"], "compare": ["score", "same"]}


def image_size_problem(size) -> str | None:
    """Why `size` cannot be the network's input side, or None."""
    if not isinstance(size, int) or isinstance(size, bool):
        return f"{size!r} is not an integer"
    if not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE or size % IMAGE_SIZE_STEP:
        return f"{size} must be a multiple of {IMAGE_SIZE_STEP} between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE}"
    return None


def higher_is_same(variant: str) -> bool:
    """A bce probability rises for the same person; a contrastive distance falls."""
    return variant == "bce"


def score_name(variant: str) -> str:
    return "probability" if higher_is_same(variant) else "distance"


def model_name(variant: str, head: str) -> str:
    """The variant, and the head when it is not the spec's: what every output is labelled with."""
    return variant if head == "concat" else f"{variant}-{head}"
