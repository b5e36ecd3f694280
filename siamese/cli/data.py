"""`siamese-data`: get and inspect data sets."""

from __future__ import annotations

from pathlib import Path

import click

from siamese.core.errors import user_errors


@click.group()
def main():
    """Get and inspect data sets."""


@main.command()
@click.option("--dest", type=click.Path(path_type=Path), default=Path("cache") / "lfw", show_default=True)
@click.option("--retries", type=click.IntRange(1, 100), default=3, show_default=True)
@user_errors
def fetch(dest, retries):
    """Download LFW (funneled images and the official pair files) from the public figshare mirror."""
    from siamese.data.fetch import fetch_lfw

    path = fetch_lfw(dest, retries=retries)
    click.echo(f"LFW is in {path}; train with: siamese-train --data {path}")


if __name__ == "__main__":
    main()
