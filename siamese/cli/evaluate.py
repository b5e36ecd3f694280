"""`siamese-eval`: a checkpoint or an export scored on any pair list."""

from __future__ import annotations

from pathlib import Path

import click

from siamese.artifacts.folder import ExportPolicy
from siamese.backends import RUNTIMES
from siamese.cli.options import policy_options
from siamese.core.errors import user_errors


@click.command(context_settings={"show_default": True})
@click.argument("source", type=click.Path(path_type=Path, exists=True))
@click.option("--pairs", "pairs_file", type=click.Path(path_type=Path, exists=True, dir_okay=False), required=True)
@click.option("--images", "image_root", type=click.Path(path_type=Path, file_okay=False), default=None)
@click.option("--runtime", type=click.Choice(list(RUNTIMES)), default="ort-cpu", help="for an export folder")
@click.option(
    "--out", type=click.Path(path_type=Path, file_okay=False), default=None, help="eval.json, roc.png, scores.png"
)
@click.option(
    "--detect/--no-detect",
    default=False,
    help="export only: find each face and frame it as the export's framing says (pairs without a face are left out)",
)
@click.option(
    "--allow-seen-people",
    is_flag=True,
    help="score pairs of people the model was trained or tuned on (refused by default: e.g. View 2's folds for a "
    "model trained on View 1's training people); the report then says it is not a test figure",
)
@policy_options
@user_errors
def main(source, pairs_file, image_root, runtime, out, detect, allow_seen_people, trust_export, verify_key):
    """Evaluate a checkpoint (.pt) or an export folder on any pair list (assignment, View 1, View 2)."""
    from siamese.tasks.evaluate import evaluate as run_evaluation

    policy = ExportPolicy.from_options(trust_export, verify_key)
    r = run_evaluation(source, pairs_file, image_root, runtime, out, policy, detect, allow_seen_people)
    far = ", ".join(f"TAR@FAR {k} {v:.4f}" for k, v in r.tar_at_far.items())
    click.echo(r.described)
    click.echo(
        f"{r.variant} on {r.n_pairs} pairs of {pairs_file.name}: accuracy {r.accuracy:.4f} at the stored threshold "
        f"{r.threshold:.4g} (best possible {r.best_accuracy:.4f} at {r.best_threshold:.4g}); AUC {r.auc:.4f}, "
        f"EER {r.eer:.4f}, {far}"
        + (f"; {len(r.folds['accuracies'])}-fold {r.folds['mean']:.4f} +- {r.folds['std']:.4f}" if r.folds else "")
        + (f"; written to {out}" if out else "")
    )


if __name__ == "__main__":
    main()
