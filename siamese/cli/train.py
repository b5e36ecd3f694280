"""`siamese-train`: its options are TrainConfig's fields (siamese.training.config)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from siamese.cli.options import options_from
from siamese.core.errors import user_errors
from siamese.core.model import VARIANTS
from siamese.training.config import TrainConfig


@click.command(context_settings={"show_default": True})
@click.option("--variant", type=click.Choice([*VARIANTS, "both"]), default="both", help="which runs: one or both")
@options_from(TrainConfig)
@user_errors
def main(variant, **options):
    """Train the siamese network (one or both variants) and evaluate it on the test pairs."""
    from siamese.training.run import main as train

    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()}
    cfg = TrainConfig(command=shlex.join(["siamese-train", *sys.argv[1:]]), **options)
    train(cfg, list(VARIANTS) if variant == "both" else [variant])


if __name__ == "__main__":  # torchrun --nproc_per_node N -m siamese.cli.train ...
    main()
