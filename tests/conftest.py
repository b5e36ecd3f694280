import os
from pathlib import Path

import pytest

from siamese.data import SHARED_LFW

LFW = Path(os.environ.get("SIAMESE_LFW", SHARED_LFW))
PROJECT_CACHE = Path(__file__).resolve().parents[1] / "cache"


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    if not (LFW / "pairsDevTrain.txt").is_file():
        pytest.skip(f"real LFW not found at {LFW} (set SIAMESE_LFW to an LFW folder)")
    return LFW


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    """The project's cache, shared across test runs so LFW is extracted once."""
    PROJECT_CACHE.mkdir(exist_ok=True)
    return PROJECT_CACHE


def make_test_checkpoint(
    path: Path, variant: str, image_size: int = 16, threshold: float | None = None, seed: int = 0
):
    """A finished-looking checkpoint of a randomly initialised network, written like training does.

    BatchNorm statistics are set from a few random batches so outputs are not degenerate.
    """
    import torch

    from siamese.checkpoint import save_checkpoint
    from siamese.model import SiameseNet
    from siamese.train import TrainConfig, make_checkpoint

    torch.manual_seed(seed)
    model = SiameseNet(variant, image_size)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, image_size, image_size), torch.randn(8, 3, image_size, image_size))
    model.eval()
    if threshold is None:
        with torch.no_grad():
            scores = model.score(
                model(torch.randn(16, 3, image_size, image_size), torch.randn(16, 3, image_size, image_size))
            )
        threshold = float(scores.median())
    cfg = TrainConfig(variant=variant, image_size=image_size)
    data = {"data_set": "lfw", "test_pairs": str(LFW / "pairsDevTest.txt")}
    optimizer = torch.optim.Adam(model.parameters())

    class _Bank:  # make_checkpoint only reads .info
        info = data

    ckpt = make_checkpoint(
        model,
        optimizer,
        1,
        cfg,
        torch.Generator(),
        _Bank(),
        [],
        threshold,
        {"data_set": "lfw", "accuracy": 0.5},
    )
    save_checkpoint(path, ckpt)
    return path
