"""`siamese-verify`: same person or not, with an export; loads no training code and no torch
for ONNX Runtime and OpenVINO runtimes."""

from __future__ import annotations

from pathlib import Path

import click

from siamese.artifacts.folder import ExportPolicy
from siamese.backends import RUNTIMES
from siamese.cli.options import export_dir_option, policy_options
from siamese.core.errors import user_errors
from siamese.core.params import Batch, OutputFile


@click.command(context_settings={"show_default": True})
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@export_dir_option
@click.option("--runtime", type=click.Choice(list(RUNTIMES)), default="ort-cpu", help="same names as siamese-bench")
@click.option(
    "--pairs",
    "pairs_file",
    type=click.Path(path_type=Path),
    default=None,
    help="pair list in any supported format, instead of IMG_A IMG_B",
)
@click.option(
    "--images",
    "image_root",
    type=click.Path(path_type=Path),
    default=None,
    help="image root for --pairs; default the LFW images next to the pair file, else its folder",
)
@click.option("--output", type=OutputFile(".csv", ".json"), default=None, help="write results to .csv or .json")
@click.option("--batch", type=Batch, default=64)
@click.option(
    "--detect/--no-detect",
    default=True,
    help="find the face and frame it as the training images (the export's framing); "
    "--no-detect: the whole image, resized",
)
@click.option(
    "--save-crops",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="write each image as the network sees it (PNG) into this folder",
)
@policy_options
@user_errors
def main(
    images, export_dir, runtime, pairs_file, image_root, output, batch, detect, save_crops, trust_export, verify_key
):
    """Decide whether two face images (IMG_A IMG_B) show the same person, or run a --pairs list."""
    from siamese.tasks.verify import Verifier, verify_pair_file

    if bool(pairs_file) == bool(images) or (images and len(images) != 2):
        raise click.UsageError("give either two images IMG_A IMG_B or --pairs FILE")
    if output and not pairs_file:
        raise click.UsageError("--output writes the results of a --pairs list")
    policy = ExportPolicy.from_options(trust_export, verify_key)
    if pairs_file:
        summary = verify_pair_file(
            pairs_file, export_dir, runtime, policy, image_root, output, batch, detect, save_crops
        )
        click.echo(summary)
    else:
        verifier = Verifier(export_dir, runtime, policy=policy, detect=detect, save_crops=save_crops)
        r = verifier.verify_files(*images)
        click.echo(verifier.folder.describe())
        click.echo(verifier.describe_framing())
        for name, framed in ((r.image_a, r.framed_a), (r.image_b, r.framed_b)):
            if framed:
                click.echo(f"{name}: {framed}")
        click.echo(verifier.describe(r.score, r.same))
        if save_crops:
            click.echo(f"crops in {save_crops}")


if __name__ == "__main__":
    main()
