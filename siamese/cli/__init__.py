"""Command-line entry points: thin click wrappers that turn options into one library call each."""

from __future__ import annotations

from pathlib import Path

import click

from siamese.artifacts.folder import DTYPES, FORMATS, ExportPolicy, path_component, read_key
from siamese.backends import RUNTIMES
from siamese.cli.options import Device, FiniteFloat, ImageSize, OutputFile, policy_options, sign_key_option
from siamese.core.errors import SiameseError, user_errors
from siamese.core.model import HEADS, NEGATIVES, VARIANTS
from siamese.training.loop import VARIANT_EPOCHS, TrainConfig

# the export a command reads: siamese-verify and siamese-serve
export_dir_option = click.option(
    "--export",
    "export_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="export folder; default the newest under exports/",
)


@click.command(context_settings={"show_default": True})
@click.option("--variant", type=click.Choice([*VARIANTS, "both"]), default="both")
@click.option(
    "--head",
    type=click.Choice(HEADS),
    default="concat",
    help="bce head: the spec's concat (at chance by construction, see README) or diff-prod, "
    "Linear(concat(|f1 - f2|, f1 * f2))",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="LFW folder (images or .tgz plus pair files) or .tgz; default: $SIAMESE_LFW, "
    "./cache/lfw (siamese-data fetch), else the synthetic set",
)
@click.option("--synthetic", is_flag=True, help="train on the built-in synthetic faces even if LFW is present")
@click.option("--train-pairs", type=click.Path(path_type=Path), default=None, help="pair file (any format)")
@click.option("--test-pairs", type=click.Path(path_type=Path), default=None, help="pair file (any format)")
@click.option("--image-size", type=ImageSize(), default=None, help="default 128 on LFW (the spec), 32 on synthetic")
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="default: "
    + ", ".join(f"{n} for {v}" for v, n in VARIANT_EPOCHS.items())
    + " (what fits 2 hours on a 2-core CPU)",
)
@click.option(
    "--sampling",
    type=click.Choice(["identity", "pairs"]),
    default=TrainConfig.sampling,
    help="identity: P x K batches of training people, loss over every pair in a batch; pairs: fixed pairs",
)
@click.option(
    "--identities-per-batch",
    type=click.IntRange(min=2),
    default=TrainConfig.identities_per_batch,
    help="P (identity sampling)",
)
@click.option(
    "--images-per-identity",
    type=click.IntRange(min=2),
    default=TrainConfig.images_per_identity,
    help="K (identity sampling)",
)
@click.option(
    "--negatives",
    type=click.Choice(NEGATIVES),
    default=None,
    help="identity sampling: every different-person pair, or the hardest ones (as many as same pairs); "
    "default: hard for contrastive, all for bce (chosen on validation)",
)
@click.option(
    "--batch-size", type=click.IntRange(min=2), default=TrainConfig.batch_size, help="pairs per step (pair sampling)"
)
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=TrainConfig.lr, help="peak learning rate (AdamW)")
@click.option(
    "--warmup",
    type=FiniteFloat(0, 1, max_open=True),
    default=TrainConfig.warmup,
    help="share of the run warming up the LR",
)
@click.option(
    "--schedule", type=click.Choice(["cosine", "constant"]), default=TrainConfig.schedule, help="LR after warm-up"
)
@click.option("--weight-decay", type=FiniteFloat(min=0), default=TrainConfig.weight_decay, help="decoupled (AdamW)")
@click.option("--margin", type=FiniteFloat(min=0, min_open=True), default=TrainConfig.margin, help="contrastive margin")
@click.option("--augment/--no-augment", default=True)
@click.option(
    "--pairs-per-epoch",
    type=click.IntRange(min=0),
    default=None,
    help="pairs drawn per epoch from training identities; default the training list's size; "
    "0 trains on the training list itself",
)
@click.option("--limit-pairs", type=click.IntRange(min=2), default=None, help="use only this many pairs of each list")
@click.option(
    "--val-identities",
    type=FiniteFloat(0, 1, max_open=True),
    default=TrainConfig.val_identities,
    help="share of training identities (people) held out to choose the threshold on; 0: use the training pairs",
)
@click.option(
    "--val-pairs", type=click.IntRange(min=2), default=TrainConfig.val_pairs, help="validation pairs drawn among them"
)
@click.option("--seed", type=int, default=TrainConfig.seed)
@click.option("--device", type=Device(), default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
@click.option(
    "--amp",
    type=click.Choice(["auto", "none", "bf16"]),
    default=TrainConfig.amp,
    help="bf16 autocast for training steps (evaluation stays fp32); auto: bf16 where the device computes "
    "it natively (GPUs, AVX-512 bf16 or AMX CPUs), else fp32",
)
@click.option(
    "--compile",
    type=click.Choice(["auto", "on", "off"]),
    default=TrainConfig.compile,
    help="torch.compile the network for training steps; auto: where Inductor can (CUDA, or a C++ compiler)",
)
@click.option(
    "--sync-bn",
    is_flag=True,
    help="under torchrun on GPUs: BatchNorm statistics over all ranks' batches (default: each rank's own)",
)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs"))
@click.option("--cache", type=click.Path(path_type=Path), default=None, help="cache folder (default ./cache)")
@click.option("--resume", is_flag=True, help="continue from <out>/<data set>/<variant>/checkpoint.pt")
@user_errors
def train(variant, data, synthetic, out, cache, **options):
    """Train the siamese network (one or both variants) and evaluate it on the test pairs."""
    from siamese.training.loop import main

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
    from siamese.data.fetch import fetch_lfw

    path = fetch_lfw(dest, retries=retries)
    click.echo(f"LFW is in {path}; train with: siamese-train --data {path}")


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
@click.option(
    "--triton-max-batch", type=click.IntRange(min=1), default=256, help="Triton's max_batch_size for each model"
)
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
@click.option("--verify-pairs", type=click.IntRange(min=1), default=32, help="real test pairs compared with eager")
@sign_key_option
@user_errors
def export(checkpoints, runs, fmt, triton_kind, triton_max_batch, dtype, out, name, force, verify_pairs, sign_key):
    """Export checkpoints to verified TorchScript, ONNX and torch.export artifacts."""
    from siamese.backends.triton.repository import ServingConfig
    from siamese.tasks.export import export_runs

    key = read_key(sign_key) if sign_key else None
    preferred = tuple(b for b in (16, 64, 256) if b < triton_max_batch) + (triton_max_batch,)
    serving = ServingConfig(triton_max_batch, preferred, kind=triton_kind)
    exported = export_runs(
        checkpoints, runs, fmt, dtype, out, name, force, verify_pairs, log=click.echo, key=key, serving=serving
    )
    for dest, checks in exported:
        for check in checks:
            click.echo(f"  ok  {check.describe()}")
        click.echo(f"exported -> {dest}")


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
@click.option("--batch", type=click.IntRange(min=1), default=64)
@policy_options
@user_errors
def verify(images, export_dir, runtime, pairs_file, image_root, output, batch, trust_export, verify_key):
    """Decide whether two face images (IMG_A IMG_B) show the same person, or run a --pairs list."""
    from siamese.tasks.verify import Verifier, verify_pair_file

    if bool(pairs_file) == bool(images) or (images and len(images) != 2):
        raise click.UsageError("give either two images IMG_A IMG_B or --pairs FILE")
    if output and not pairs_file:
        raise click.UsageError("--output writes the results of a --pairs list")
    policy = ExportPolicy.from_options(trust_export, verify_key)
    if pairs_file:
        click.echo(verify_pair_file(pairs_file, export_dir, runtime, policy, image_root, output, batch))
    else:
        verifier = Verifier(export_dir, runtime, policy=policy)
        r = verifier.verify_files(*images)
        click.echo(verifier.describe(r["score"], r["same"]))


@click.command(context_settings={"show_default": True})
@click.argument("source", type=click.Path(path_type=Path, exists=True))
@click.option("--pairs", "pairs_file", type=click.Path(path_type=Path, exists=True, dir_okay=False), required=True)
@click.option("--images", "image_root", type=click.Path(path_type=Path, file_okay=False), default=None)
@click.option("--runtime", type=click.Choice(list(RUNTIMES)), default="ort-cpu", help="for an export folder")
@click.option(
    "--out", type=click.Path(path_type=Path, file_okay=False), default=None, help="eval.json, roc.png, scores.png"
)
@policy_options
@user_errors
def evaluate(source, pairs_file, image_root, runtime, out, trust_export, verify_key):
    """Evaluate a checkpoint (.pt) or an export folder on any pair list (assignment, View 1, View 2)."""
    from siamese.tasks.evaluate import evaluate as run_evaluation

    policy = ExportPolicy.from_options(trust_export, verify_key)
    r = run_evaluation(source, pairs_file, image_root, runtime, out, policy)
    far = ", ".join(f"TAR@FAR {k} {v:.4f}" for k, v in r.tar_at_far.items())
    click.echo(
        f"{r.variant} on {r.n_pairs} pairs of {pairs_file.name}: accuracy {r.accuracy:.4f} at the stored threshold "
        f"{r.threshold:.4g} (best possible {r.best_accuracy:.4f} at {r.best_threshold:.4g}); AUC {r.auc:.4f}, "
        f"EER {r.eer:.4f}, {far}"
        + (f"; {len(r.folds['accuracies'])}-fold {r.folds['mean']:.4f} +- {r.folds['std']:.4f}" if r.folds else "")
        + (f"; written to {out}" if out else "")
    )


def _plain_name(value: str, param) -> str:
    try:
        return path_component(value, "export name")
    except SiameseError as exc:
        raise click.BadParameter(str(exc), param=param) from None


@click.command(context_settings={"show_default": True})
@export_dir_option
@click.option("--runtime", type=click.Choice(list(RUNTIMES)), default="ort-cpu", help="what runs each request")
@click.option("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
@click.option("--http-port", type=click.IntRange(1, 65535), default=8000)
@click.option("--grpc-port", type=click.IntRange(1, 65535), default=8001)
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=8002)
@click.option("--max-batch", type=click.IntRange(min=1), default=64, help="largest batch Triton forms per model")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="intra-op threads of the runtime")
@policy_options
@user_errors
def serve(export_dir, runtime, host, http_port, grpc_port, metrics_port, max_batch, threads, trust_export, verify_key):
    """Serve an export through Triton Inference Server (PyTriton): HTTP, gRPC, dynamic batching."""
    from siamese.artifacts.folder import newest_export
    from siamese.backends.triton.repository import ServingConfig
    from siamese.backends.triton.server import Server, ServerAddress

    address = ServerAddress(host, http_port, grpc_port, metrics_port)
    preferred = tuple(b for b in (8, 16, 64) if b < max_batch) + (max_batch,)
    policy = ExportPolicy.from_options(trust_export, verify_key)
    server = Server(
        export_dir or newest_export(), runtime, address, ServingConfig(max_batch, preferred), policy, threads
    )
    server.start()
    click.echo(f"serving {server.export.path} with {runtime}: HTTP {address.http_url}, gRPC {address.grpc_url}")
    server.serve_forever()
