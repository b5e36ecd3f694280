"""Command-line entry points: thin click wrappers that turn options into library calls."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from siamese.errors import SiameseError
from siamese.model import VARIANTS


def user_errors(fn):
    """Show a SiameseError as one line and a non-zero exit, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SiameseError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            raise click.Abort() from None

    return wrapper


@click.command(context_settings={"show_default": True})
@click.option("--variant", type=click.Choice([*VARIANTS, "both"]), default="both")
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="LFW folder (images or .tgz plus pair files) or .tgz; default: $SIAMESE_LFW, "
    "../shared/data/lfw, ./cache/lfw, else the synthetic set",
)
@click.option(
    "--synthetic", is_flag=True, help="train on the built-in synthetic faces even if LFW is present"
)
@click.option("--train-pairs", type=click.Path(path_type=Path), default=None, help="pair file (any format)")
@click.option("--test-pairs", type=click.Path(path_type=Path), default=None, help="pair file (any format)")
@click.option("--image-size", type=int, default=None, help="default 128 on LFW (the spec), 32 on synthetic")
@click.option("--epochs", type=click.IntRange(min=1), default=10)
@click.option("--batch-size", type=click.IntRange(min=2), default=32, help="pairs per step")
@click.option("--lr", type=float, default=1e-4)
@click.option("--weight-decay", type=float, default=0.0)
@click.option("--margin", type=float, default=1.0, help="contrastive margin")
@click.option("--augment/--no-augment", default=True)
@click.option(
    "--pairs-per-epoch",
    type=click.IntRange(min=0),
    default=None,
    help="pairs drawn per epoch from training identities; default the training list's size; "
    "0 trains on the training list itself",
)
@click.option(
    "--limit-pairs", type=click.IntRange(min=2), default=None, help="use only this many pairs of each list"
)
@click.option("--seed", type=int, default=0)
@click.option("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
@click.option(
    "--amp",
    type=click.Choice(["none", "bf16"]),
    default="none",
    help="bf16 autocast for training steps (evaluation stays fp32)",
)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs"))
@click.option("--cache", type=click.Path(path_type=Path), default=None, help="cache folder (default ./cache)")
@click.option("--resume", is_flag=True, help="continue from <out>/<data set>/<variant>/checkpoint.pt")
@user_errors
def train(variant, data, synthetic, out, cache, **options):
    """Train the siamese network (one or both variants) and evaluate it on the test pairs."""
    from siamese.train import TrainConfig, main

    cfg = TrainConfig(
        data=str(data) if data else None,
        synthetic=synthetic,
        out=str(out),
        **({"cache": str(cache)} if cache else {}),
        **{k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()},
    )
    main(cfg, list(VARIANTS) if variant == "both" else [variant])


@click.group()
def data():
    """Get and inspect data sets."""


@data.command()
@click.option("--dest", type=click.Path(path_type=Path), default=Path("cache") / "lfw", show_default=True)
@click.option("--retries", type=click.IntRange(min=1), default=3, show_default=True)
@user_errors
def fetch(dest, retries):
    """Download LFW (funneled images and the official pair files) from the public figshare mirror."""
    from siamese.fetch import fetch_lfw

    path = fetch_lfw(dest, retries=retries)
    click.echo(f"LFW is in {path}; train with: siamese-train --data {path}")


@click.command()
@user_errors
def export():
    """Export a checkpoint to TorchScript, ONNX and torch.export artifacts."""
    raise SiameseError("siamese-export is not implemented yet")


@click.command()
@user_errors
def verify():
    """Decide whether two face images show the same person, using an export folder."""
    raise SiameseError("siamese-verify is not implemented yet")
