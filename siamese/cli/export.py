"""`siamese-export`: checkpoints to verified, self-describing export folders."""

from __future__ import annotations

from pathlib import Path

import click

from siamese.artifacts.folder import path_component, read_key
from siamese.artifacts.formats import DTYPES, FORMATS
from siamese.cli.options import sign_key_option
from siamese.core.errors import SiameseError, user_errors
from siamese.core.params import Batch


def _plain_name(value: str, param) -> str:
    try:
        return path_component(value, "export name")
    except SiameseError as exc:
        raise click.BadParameter(str(exc), param=param) from None


@click.command(context_settings={"show_default": True})
@click.option(
    "--checkpoint",
    "checkpoints",
    type=click.Path(path_type=Path, dir_okay=False),
    multiple=True,
    help="training checkpoint(s); default: the newest finished one of each variant under --runs",
)
@click.option("--runs", type=click.Path(path_type=Path), default=Path("runs"))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["all", *FORMATS, "triton"]),
    multiple=True,
    default=["all"],
    help="all = onnx, torchscript, pt2, and aoti where a C++ compiler is present; "
    "triton = a Triton model repository (with the onnx graphs it serves)",
)
@click.option(
    "--triton-kind", type=click.Choice(["cpu", "gpu"]), default="cpu", help="where Triton runs the model instances"
)
@click.option("--triton-max-batch", type=Batch, default=256, help="Triton's max_batch_size for each model")
@click.option(
    "--dtype",
    type=click.Choice(list(DTYPES)),
    default="fp32",
    help="fp16/bf16 are for GPUs; int8: ONNX static quantization calibrated on training images, "
    "for CPUs; each checked with its own tolerance (see README)",
)
@click.option("--out", type=click.Path(path_type=Path), default=Path("exports"))
@click.option(
    "--name",
    default=None,
    callback=lambda ctx, param, value: None if value is None else _plain_name(value, param),
    help="export folder name (one checkpoint only); default <data set>-<variant>-<dtype>",
)
@click.option("--force", is_flag=True, help="replace an existing export folder (only the one it names)")
@click.option("--verify-pairs", type=click.IntRange(1, 100_000), default=32, help="real test pairs compared with eager")
@click.option(
    "--untrained",
    is_flag=True,
    help="also export a checkpoint that never finished training (random weights: for tests and timing only)",
)
@sign_key_option
@user_errors
def main(
    checkpoints, runs, fmt, triton_kind, triton_max_batch, dtype, out, name, force, verify_pairs, untrained, sign_key
):
    """Export checkpoints to verified TorchScript, ONNX and torch.export artifacts."""
    from siamese.backends.triton.repository import ServingConfig
    from siamese.tasks.export import export_runs

    key = read_key(sign_key) if sign_key else None
    serving = ServingConfig.up_to(triton_max_batch, kind=triton_kind)
    exported = export_runs(
        checkpoints, runs, fmt, dtype, out, name, force, verify_pairs, click.echo, key, serving, untrained
    )
    for dest, checks in exported:
        for check in checks:
            click.echo(f"  ok  {check.describe()}")
        click.echo(f"exported -> {dest}")


if __name__ == "__main__":
    main()
