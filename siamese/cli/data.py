"""`siamese-data`: get and inspect data sets."""

from __future__ import annotations

from pathlib import Path

import click

from siamese.core.errors import user_errors
from siamese.core.files import DEFAULT_CACHE
from siamese.core.spec import SPEC_IMAGE_SIZE


@click.group()
def main():
    """Get and inspect data sets."""


@main.command()
@click.option("--dest", type=click.Path(path_type=Path), default=Path("cache") / "lfw", show_default=True)
@click.option("--retries", type=click.IntRange(1, 100), default=3, show_default=True)
@user_errors
def fetch(dest, retries):
    """Download LFW: the deep-funneled images (from the LFW site) and the official pair files
    (from the figshare mirror scikit-learn uses), each checked against its published checksum."""
    from siamese.data.fetch import fetch_lfw

    path = fetch_lfw(dest, retries=retries)
    click.echo(f"LFW is in {path}; train with: siamese-train --data {path}")


@main.command()
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--pairs", "n_pairs", type=click.IntRange(1, 600), default=100, show_default=True)
@click.option("--image-size", type=click.IntRange(16, 256), default=32, show_default=True)
@user_errors
def synthetic(dest, n_pairs, image_size):
    """Write synthetic test faces as PNGs and a pairs.txt under DEST (for trying the tools without LFW)."""
    from siamese.data.synthetic import write_synthetic_pairs

    pairs = write_synthetic_pairs(dest, n_pairs, image_size)
    click.echo(f"{n_pairs} labelled pairs in {pairs}; e.g. siamese-verify --pairs {pairs}")


@main.command()
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), help="LFW folder or .tgz; default: $SIAMESE_LFW, ./cache/lfw")
@click.option("--image-size", type=click.IntRange(8, 1024), default=SPEC_IMAGE_SIZE, show_default=True)
@click.option("--quality", type=click.IntRange(50, 100), default=90, show_default=True, help="JPEG quality")
@click.option("--cache", type=click.Path(path_type=Path), default=DEFAULT_CACHE, show_default=True)
@user_errors
def pack(dest, data, image_size, quality, cache):
    """Write a training pack to DEST: the images one LFW training run decodes, resized and
    re-encoded, with the pair files (for a machine without LFW: the GPU check; not for accuracy)."""
    from siamese.data.lfw import find_lfw
    from siamese.data.pack import write_pack

    # no copy found (None): write_pack's first step, locate_lfw, says where to get one
    record = write_pack(data or find_lfw(cache), dest, image_size, quality, cache)
    click.echo(
        f"{dest}: {record.images} images of {record.train_identities} training identities at {image_size} px, "
        f"{record.image_bytes / 2**20:.1f} MiB; train on it with: siamese-train --data {dest}"
    )


@main.command()
@click.option("--cache", type=click.Path(path_type=Path), default=DEFAULT_CACHE, show_default=True)
@click.option("--exports", type=click.Path(path_type=Path), default=Path("exports"), show_default=True)
@user_errors
def info(cache, exports):
    """Show the data and the export the tools would use, and where each comes from."""
    from siamese.artifacts.folder import ExportFolder, default_export
    from siamese.core.errors import SiameseError
    from siamese.data.lfw import describe_lfw

    for line in describe_lfw(cache):
        click.echo(line)
    try:
        click.echo(f"default {ExportFolder.open(default_export(exports)).describe()}")
    except SiameseError as exc:
        click.echo(f"default export: none ({exc})")


if __name__ == "__main__":
    main()
