"""`siamese-eval`: how well a checkpoint or an export verifies the pairs of any pair list.

Figures: accuracy at the model's stored threshold; the best accuracy any threshold reaches on
this very list (the gap between the two shows how well the threshold transfers); ROC AUC;
EER; the true-accept rate at false-accept rates of 1e-2 and 1e-3; and, for a View 2 file,
the 10-fold figure of LFW's protocol (each fold's threshold chosen on the other nine, mean
and standard deviation). Written as JSON with a ROC curve and a histogram of the scores of
same and different pairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from siamese.artifacts.checkpoint import load_checkpoint
from siamese.artifacts.folder import DEFAULT_POLICY, MANIFEST, ExportPolicy
from siamese.artifacts.records import TrainedOn
from siamese.core.errors import SiameseError
from siamese.core.files import check_writable, write_json, write_png
from siamese.core.metrics import Verification, best_threshold, decide, roc_curve, verification_metrics
from siamese.core.model import SiameseNet
from siamese.core.pairs import read_pairs
from siamese.core.preprocess import NORMALIZATION, check_pair_images, to_model_input
from siamese.data.lfw import ImageBank, PairSet


@dataclass
class Scored:
    """Every pair's score, and how the model reads a score."""

    scores: np.ndarray
    same: np.ndarray  # labels
    folds: np.ndarray | None  # View 2 fold of each pair
    threshold: float
    higher_is_same: bool
    variant: str
    source: str
    model: dict = field(default_factory=dict)  # TrainedOn.model_record: which model gave the scores
    described: str = ""  # and the line that says so


@dataclass
class Evaluation(Verification):
    """The metrics of one pair list, and what was scored on which list (eval.json)."""

    source: str = ""
    pairs_file: str = ""
    variant: str = ""
    folds: dict | None = None  # View 2: per-fold accuracy, mean, std
    model: dict = field(default_factory=dict)
    described: str = ""


def fold_accuracies(scored: Scored) -> dict:
    """LFW View 2: each fold tested at the threshold that is best on the other folds."""
    accuracies = []
    for fold in np.unique(scored.folds):
        test = scored.folds == fold
        cut = best_threshold(scored.scores[~test], scored.same[~test], scored.higher_is_same)
        accuracies.append(float((decide(scored.scores[test], cut, scored.higher_is_same) == scored.same[test]).mean()))
    return {"accuracies": accuracies, "mean": float(np.mean(accuracies)), "std": float(np.std(accuracies))}


def metrics(scored: Scored, pairs_file: Path) -> Evaluation:
    figures = verification_metrics(scored.scores, scored.same, scored.threshold, scored.higher_is_same)
    multi_fold = scored.folds is not None and len(np.unique(scored.folds)) > 1
    return Evaluation(
        **vars(figures),
        source=scored.source,
        pairs_file=str(pairs_file),
        variant=scored.variant,
        folds=fold_accuracies(scored) if multi_fold else None,
        model=scored.model,
        described=scored.described,
    )


@torch.no_grad()
def predict(model: SiameseNet, bank: ImageBank, pairs: PairSet, device, batch_size: int = 64) -> np.ndarray:
    """Scores of every pair; each distinct image is embedded once."""
    model.eval()
    rows, inverse = torch.unique(torch.cat([pairs.a, pairs.b]), return_inverse=True)
    features = torch.cat(
        [
            model.embed(to_model_input(bank.images[rows[i : i + batch_size]].to(device), NORMALIZATION))
            for i in range(0, len(rows), batch_size)
        ]
    )
    fa, fb = features[inverse].chunk(2)
    return model.score(model.compare(fa, fb)).float().cpu().numpy()


def refuse_seen_people(trained: TrainedOn, pairs: list, allow: bool) -> str:
    """A model scored on people it was trained or tuned on measures memory, not verification
    (View 2's folds hold View 1's training people): refused, or with `allow` said on every report."""
    seen = trained.seen_pairs(pairs)
    if not seen:
        return ""
    what = (
        f"{len(seen)} of {len(pairs)} pairs show people this model was trained or tuned on "
        f"(e.g. {seen[0].a.split('/')[0]})"
    )
    if not allow:
        raise SiameseError(f"{what}: their figure would not be a test figure; --allow-seen-people scores them anyway")
    return f"\n{what}: NOT a test figure"


def score_export(
    folder: Path,
    pairs,
    image_root: Path,
    runtime: str,
    policy: ExportPolicy,
    detect: bool = False,
    allow_seen_people: bool = False,
) -> tuple[Scored, list]:
    """The export's scores of `pairs` (and the pairs scored). `detect`: frame each image as the
    export's framing says; pairs with an image where no face is found are left out, and said so."""
    from siamese.tasks.verify import Verifier

    verifier = Verifier(folder, runtime, policy=policy, detect=detect)
    seen = refuse_seen_people(verifier.metadata.training, pairs, allow_seen_people)
    rows = verifier.verify_pairs(pairs, image_root)
    kept = [(p, r) for p, r in zip(pairs, rows, strict=True) if r.undecided is None]
    left_out = len(pairs) - len(kept)
    meta = verifier.metadata
    described = verifier.folder.describe() + (f"\n{verifier.describe_framing()}" if detect else "") + seen
    if left_out:
        described += f"\n{left_out} of {len(pairs)} pairs left out: no face found in an image"
    scored = Scored(
        np.array([r.score for _, r in kept]),
        np.array([p.same == 1 for p, _ in kept]),
        None,
        meta.threshold,
        meta.higher_is_same,
        meta.variant,
        f"export {folder} ({runtime})",
        verifier.model_record(),
        described,
    )
    return scored, [p for p, _ in kept]


def score_checkpoint(
    path: Path, pairs, image_root: Path, device: str = "cpu", allow_seen_people: bool = False
) -> Scored:
    ckpt = load_checkpoint(path)
    if ckpt.threshold is None:
        raise SiameseError(f"{path}: has no decision threshold: training did not finish its evaluation")
    trained = TrainedOn.of(ckpt.summary, ckpt.data_set)
    seen = refuse_seen_people(trained, pairs, allow_seen_people)
    keys = [k for p in pairs for k in (p.a, p.b)]
    bank = ImageBank.decode(image_root, keys, ckpt.model_config.image_size, crop=ckpt.input_framing.crop)
    scores = predict(ckpt.build_model().to(device), bank, PairSet.from_pairs(bank, pairs), torch.device(device))
    return Scored(
        scores,
        np.array([p.same == 1 for p in pairs]),
        None,
        ckpt.threshold,
        ckpt.higher_is_same,
        ckpt.variant,
        f"checkpoint {path}",
        trained.model_record(str(path), ckpt.model_config.name, "fp32"),
        trained.describe(str(path), ckpt.model_config.name, "fp32") + seen,
    )


def evaluate(
    source: Path,
    pairs_file: Path,
    image_root: Path | None = None,
    runtime: str = "ort-cpu",
    out: Path | None = None,
    policy: ExportPolicy = DEFAULT_POLICY,
    detect: bool = False,
    allow_seen_people: bool = False,
) -> Evaluation:
    """Score every pair of `pairs_file` with a checkpoint (.pt) or an export folder; write JSON and plots to `out`.
    Pairs showing people the model was trained or tuned on are refused unless `allow_seen_people`."""
    from siamese.tasks.verify import image_root_for

    source = Path(source)
    pairs = read_pairs(pairs_file)
    if len({p.same for p in pairs}) < 2:
        raise SiameseError(f"{pairs_file}: every pair is labelled {pairs[0].same}; evaluation needs both kinds")
    is_export = source.is_dir() and (source / MANIFEST).is_file()
    if not is_export and not source.is_file():
        raise SiameseError(f"{source}: neither a checkpoint file nor an export folder")
    image_root = check_pair_images(image_root or image_root_for(pairs_file), (k for p in pairs for k in (p.a, p.b)))
    if out is not None:
        check_writable(out)
    if is_export:
        scored, pairs = score_export(source, pairs, image_root, runtime, policy, detect, allow_seen_people)
        if len({p.same for p in pairs}) < 2:
            raise SiameseError(f"{pairs_file}: too few pairs have a face in both images to evaluate")
    elif detect:
        raise SiameseError("--detect frames images as an export's metadata says: give an export folder")
    else:
        scored = score_checkpoint(source, pairs, image_root, allow_seen_people=allow_seen_people)
    folds = [p.fold for p in pairs]
    scored.folds = None if any(f is None for f in folds) else np.array(folds)
    return report(scored, pairs_file, out)


def report(scored: Scored, pairs_file, out: Path | None = None) -> Evaluation:
    """The figures of scored pairs; with `out`, also eval.json, roc.png and scores.png there."""
    result = metrics(scored, pairs_file)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "eval.json", result.to_dict())
        source = Path(scored.model.get("source") or scored.source)
        model = "/".join(source.parts[-3:-1]) if source.suffix == ".pt" else source.name  # run or export folder
        title = f"{scored.variant}, {model}\n{len(scored.same)} pairs: {Path(pairs_file).name}"
        plot_roc(out / "roc.png", scored, result, title)
        plot_histogram(out / "scores.png", scored, title)
    return result


def plot_roc(path: Path, scored: Scored, result: Evaluation, title: str) -> None:
    """ROC on a log FAR axis (TAR at FAR 1e-3 is readable), the operating point of the stored
    threshold and the equal error rate marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fpr, tpr, _ = roc_curve(scored.scores, scored.same, scored.higher_is_same)
    floor = 1 / max(int((~scored.same).sum()), 1)  # the smallest FAR these pairs can show
    fig, ax = plt.subplots(figsize=(6, 4.8))
    ax.plot(np.maximum(fpr, floor / 2), tpr, lw=2, label=f"ROC (AUC {result.auc:.3f})")
    grid = np.logspace(np.log10(floor / 2), 0, 100)
    ax.plot(grid, grid, "--", color="grey", lw=1, label="chance")
    decided = decide(scored.scores, scored.threshold, scored.higher_is_same)
    far = float(decided[~scored.same].mean()) if (~scored.same).any() else 0.0
    tar = float(decided[scored.same].mean()) if scored.same.any() else 0.0
    ax.plot(max(far, floor / 2), tar, "o", color="black", label=f"stored threshold: FAR {far:.3f}, TAR {tar:.3f}")
    ax.plot(result.eer, 1 - result.eer, "s", color="tab:red", label=f"equal error rate {result.eer:.3f}")
    ax.set_xscale("log")
    ax.set(
        xlabel="false accept rate (log)", ylabel="true accept rate", title=title, xlim=(floor / 2, 1), ylim=(0, 1.01)
    )
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    write_png(fig, path, dpi=120)


def plot_histogram(path: Path, scored: Scored, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.histogram_bin_edges(scored.scores, bins=40)
    ax.hist(scored.scores[scored.same], bins=bins, alpha=0.6, label="same person")
    ax.hist(scored.scores[~scored.same], bins=bins, alpha=0.6, label="different people")
    ax.axvline(scored.threshold, color="black", lw=1, label=f"stored threshold {scored.threshold:.4g}")
    side = "above" if scored.higher_is_same else "below"
    what = "probability of the same person" if scored.higher_is_same else "distance between the embeddings"
    ax.set(xlabel=f"{what} (same person {side} the threshold)", ylabel="pairs", title=title)
    ax.legend(title="labelled pairs", fontsize=8)
    fig.tight_layout()
    write_png(fig, path, dpi=120)
