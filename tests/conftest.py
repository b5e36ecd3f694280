import os
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the project's shared copy beside the checkout: the suite's own default, which the library never
# assumes; exported so that the tools the tests start find it as a user's $SIAMESE_LFW
LFW = Path(os.environ.get("SIAMESE_LFW") or ROOT.parent / "shared" / "data" / "lfw")
if (LFW / "pairsDevTrain.txt").is_file():
    os.environ["SIAMESE_LFW"] = str(LFW)
PROJECT_CACHE = ROOT / "cache"


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


def make_test_checkpoint(path: Path, variant: str, image_size: int = 16, seed: int = 0) -> Path:
    """An untrained checkpoint whose verification inputs are the real LFW test pairs."""
    from siamese.artifacts.checkpoint import untrained_checkpoint

    data = {"data_set": "lfw", "test_pairs": str(LFW / "pairsDevTest.txt")}
    return untrained_checkpoint(path, variant, image_size, seed, data)


def writable_formats(dtype: str = "fp32") -> list[str]:
    """Every export format this machine can write in `dtype`, the OpenVINO IR that `all`
    leaves out in float (a second copy of the weights) among them."""
    from siamese.artifacts.formats import FORMATS

    return [f.name for f in FORMATS.values() if f.supports(dtype) and f.missing(dtype) is None]


@pytest.fixture(scope="session")
def small_export(tmp_path_factory):
    """export_for(variant): an untrained 16x16 network exported once per session in every
    format this machine can write (the OpenVINO IR too, which `all` leaves out)."""
    from siamese.tasks.export import export_checkpoint

    formats = writable_formats()
    made = {}

    def export_for(variant: str):
        if variant not in made:
            tmp = tmp_path_factory.mktemp(f"export-{variant}")
            ckpt = make_test_checkpoint(tmp / "checkpoint.pt", variant, 16)
            dest, checks = export_checkpoint(
                ckpt, tmp / "exports", formats=formats, n_pairs=8, log=lambda m: None, untrained=True
            )
            made[variant] = (ckpt, dest, checks)
        return made[variant]

    return export_for


@pytest.fixture
def contrastive_export(small_export) -> Path:
    """The session's small contrastive export folder."""
    _, dest, _ = small_export("contrastive")
    return dest


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """A small image root of two people (refusals.image_root)."""
    from refusals import image_root

    return image_root(tmp_path)


def free_ports(n: int) -> list[int]:
    """n local ports free now (for servers the tests start)."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports
