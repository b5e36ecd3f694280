"""A training run, torchvision-references style: `main(cfg)` trains each variant with the loop
(siamese.training.loop) and writes, under `<out>/<data set>/<variant>[-<head>]/`:
`checkpoint.pt` (every epoch, atomically), `metrics.jsonl` (one line per epoch),
`curves.png` (loss and validation per epoch, after each), `roc.png`, `scores.png` and
`summary.json` (after the final evaluation).
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from siamese.artifacts.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from siamese.artifacts.records import EpochStats, TrainingSummary
from siamese.core.errors import SiameseError
from siamese.core.files import append_line, check_writable, exclusive_lock, write_json, write_text
from siamese.core.model import ModelConfig, SiameseNet
from siamese.core.preprocess import NORMALIZATION
from siamese.core.provenance import git_commit, host, utc_now
from siamese.core.spec import SPEC_IMAGE_SIZE
from siamese.data.lfw import Dataset, find_lfw, load_lfw
from siamese.data.pack import RECORD as PACK_RECORD
from siamese.detect.framing import Framing
from siamese.tasks.evaluate import Scored, report
from siamese.training.config import TrainConfig
from siamese.training.distributed import SINGLE_PROCESS, Distributed, from_environment
from siamese.training.loop import (
    check_ranks_agree,
    distributed_step,
    evaluate,
    make_optimizer,
    resolve_amp,
    train_one_epoch,
    validate,
)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SiameseError(f"device {name!r} requested but CUDA is not available here")
    return torch.device(name)


def load_dataset(cfg: TrainConfig) -> Dataset:
    """LFW when given or found, else the synthetic set (announced loudly), with its validation split."""
    dataset = _load_data(cfg)
    if cfg.val_identities > 0:
        dataset = dataset.split_validation(cfg.val_identities, cfg.val_pairs, cfg.seed)
    return dataset


def data_source(cfg: TrainConfig) -> Path | None:
    """The LFW folder or archive to train on; None: the synthetic set, only when asked for."""
    if cfg.data:
        return Path(cfg.data)
    if cfg.synthetic:
        return None
    found = find_lfw(Path(cfg.cache))
    if found is None:
        raise SiameseError(
            f"no LFW found ($SIAMESE_LFW is unset, and {Path(cfg.cache) / 'lfw'} holds none): run siamese-data fetch, "
            "pass --data PATH (an LFW folder or .tgz), or --synthetic for the built-in synthetic faces"
        )
    return found


def _load_data(cfg: TrainConfig) -> Dataset:
    from siamese.data.synthetic import make_synthetic

    data = data_source(cfg)
    if data is None:
        if cfg.crop_for("synthetic") < 1:
            raise SiameseError("--crop applies to LFW's frames; the synthetic faces are drawn to fill theirs")
        print("training on the built-in synthetic face set (--synthetic)", file=sys.stderr)
        return make_synthetic(image_size=cfg.image_size or 32, seed=cfg.seed)
    if cfg.crop_for("lfw") < 1 and (Path(data) / PACK_RECORD).is_file():
        raise SiameseError(
            f"{data} is a training pack of whole frames resized to the training size: --crop {cfg.crop_for('lfw')} "
            "needs LFW's own images (a crop of the pack's would be upsampled); pass --crop 1 to train on it"
        )
    return load_lfw(
        data,
        cfg.image_size or SPEC_IMAGE_SIZE,
        Path(cfg.train_pairs) if cfg.train_pairs else None,
        Path(cfg.test_pairs) if cfg.test_pairs else None,
        cache_dir=Path(cfg.cache),
        limit=cfg.limit_pairs,
        crop=cfg.crop_for("lfw"),
    )


def make_checkpoint(model, optimizer, epoch, cfg, g, data_info: dict, history, threshold=None, summary=None):
    return Checkpoint(
        model=model.state_dict(),
        model_config=model.config,
        normalization=NORMALIZATION,
        epoch=epoch,
        config=cfg.to_dict(),
        optimizer=optimizer.state_dict(),
        threshold=threshold,
        rng={"generator": g.get_state(), "torch": torch.get_rng_state()},
        data=data_info,
        history=history,
        summary=summary,
        framing=Framing.for_data_set(data_info.get("data_set", "model"), cfg.crop_for(data_info.get("data_set"))),
    )


def run_dir(cfg: TrainConfig, dataset_name: str) -> Path:
    return Path(cfg.out) / dataset_name / ModelConfig(cfg.variant, head=cfg.head_used).name


def check_run(cfg: TrainConfig, dataset_name: str, image_size: int) -> None:
    """Refuse, before any data is decoded, a run that would overwrite a checkpoint, resume a
    different model, or write into a folder it cannot write."""
    model_config = ModelConfig(cfg.variant, image_size, cfg.margin, cfg.head_used)
    ckpt_path = run_dir(cfg, dataset_name) / "checkpoint.pt"
    if ckpt_path.exists() and not cfg.resume:
        raise SiameseError(f"{ckpt_path} exists: pass --resume to continue it, or choose another --out")
    if cfg.resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        if ckpt.model_config != model_config:
            raise SiameseError(f"{ckpt_path}: was trained as {ckpt.model_config}, not {model_config}")
        if ckpt.optimizer is None or ckpt.rng is None:
            raise SiameseError(f"{ckpt_path}: holds no optimizer or RNG state to resume from")
        if ckpt.epoch >= cfg.epochs_used and ckpt.summary is not None:
            raise SiameseError(f"{ckpt_path}: already finished {ckpt.epoch} epochs; raise --epochs to train on")
        changes = cfg.recipe_changes(ckpt.config)
        if changes and not cfg.allow_recipe_change:
            raise SiameseError(
                f"{ckpt_path}: was trained with {describe_changes(changes, 0)}, not {describe_changes(changes, 1)}; "
                "resume with the same options, or pass --allow-recipe-change to train on and record the change"
            )
    check_writable(ckpt_path.parent)


def plot_curves(history: list[EpochStats], path: Path, title: str) -> None:
    """curves.png: training loss, validation accuracy and AUC per epoch, rewritten after each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from siamese.core.files import write_png

    epochs = [h.epoch for h in history]
    fig, (loss, val) = plt.subplots(1, 2, figsize=(9, 3.6))
    loss.plot(epochs, [h.train_loss for h in history], "o-")
    loss.set(xlabel="epoch", ylabel="training loss", title="training loss")
    for name, values in (("accuracy", [h.val_accuracy for h in history]), ("AUC", [h.val_auc for h in history])):
        if any(v is not None for v in values):
            val.plot(epochs, [float("nan") if v is None else v for v in values], "o-", label=f"validation {name}")
    val.set(xlabel="epoch", ylabel="validation pairs (held-out people)", title="validation", ylim=(0.4, 1.0))
    val.legend(loc="lower right")
    for ax in (loss, val):
        ax.grid(True, alpha=0.3)
        ax.set_xticks(epochs)
    fig.suptitle(title)
    fig.tight_layout()
    write_png(fig, path, dpi=110)


def describe_changes(changes: dict, which: int) -> str:
    return ", ".join(f"{name}={values[which]!r}" for name, values in changes.items())


def train_variant(cfg: TrainConfig, dataset: Dataset, world: Distributed = SINGLE_PROCESS) -> TrainingSummary | None:
    """Train one variant on an already loaded data set; returns its summary (rank 0; None elsewhere)."""
    commit = git_commit()  # the code that trains, not whatever HEAD is when a long run ends
    device = resolve_device(cfg.device)
    cfg = replace(cfg, amp=resolve_amp(cfg.amp, device))  # the checkpoint and summary record what ran
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    image_size = dataset.bank.images.shape[1]
    model = SiameseNet(cfg.variant, image_size, cfg.margin, cfg.head_used).to(device)
    optimizer = make_optimizer(model, cfg)
    out = run_dir(cfg, dataset.name)
    ckpt_path = out / "checkpoint.pt"
    history, start_epoch, rank_digests, changes = [], 1, [], {}
    check_run(cfg, dataset.name, image_size)
    if cfg.resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        model.load_state_dict(ckpt.model)
        optimizer.load_state_dict(ckpt.optimizer)  # its settings too: runs saved unfused resume unfused
        g.set_state(ckpt.rng["generator"])
        torch.set_rng_state(ckpt.rng["torch"])
        history, start_epoch = ckpt.history, ckpt.epoch + 1
        print(f"resuming {cfg.variant} from {ckpt_path} after epoch {ckpt.epoch}", file=sys.stderr)
        changes = cfg.recipe_changes(ckpt.config)
        if changes:
            print(f"recipe changed from epoch {start_epoch}: {describe_changes(changes, 1)}", file=sys.stderr)

    if world.is_main:
        train_images = sum(len(rows) for rows in dataset.train_identities.values())
        print(
            f"training {model.config.name} on {dataset.name} ({dataset.info.get('image_root', 'built-in')}): "
            f"{train_images} images of {len(dataset.train_identities)} training people "
            f"(the centred {cfg.crop_for(dataset.name):g} of each frame, --crop), "
            f"epochs {start_epoch}-{cfg.epochs_used} on {device}, amp {cfg.amp}, compile {cfg.compile}; "
            f"writing {out}",
            file=sys.stderr,
            flush=True,
        )
    metrics_log = out / "metrics.jsonl"
    if history and world.is_main:
        # the checkpoint's history is the record: a run killed between saving an epoch and
        # logging it would otherwise resume with that epoch missing from the log
        write_text(metrics_log, "".join(h.line() + "\n" for h in history))
    step_loss = distributed_step(model, cfg, device, world)
    for epoch in range(start_epoch, cfg.epochs_used + 1):
        trained = train_one_epoch(model, optimizer, dataset, cfg, device, g, epoch, step_loss, world)
        rank_digests = check_ranks_agree(model, world, epoch)
        if not world.is_main:
            continue
        stats = EpochStats(
            cfg.variant,
            model.config.head,
            dataset.name,
            **trained,
            **validate(model, dataset, device, cfg.eval_batch_size),
            recipe_changes=changes if epoch == start_epoch else {},
        )
        history.append(stats)
        save_checkpoint(ckpt_path, make_checkpoint(model, optimizer, epoch, cfg, g, dataset.info, history))
        # after the checkpoint: a run killed in between logs no epoch that a resume would train again
        line = stats.line()
        print(line, flush=True)
        append_line(metrics_log, line)
        plot_curves(history, out / "curves.png", f"{model.config.name} on {dataset.name} ({out})")
        left = (cfg.epochs_used - epoch) * stats.epoch_s / 60
        print(
            f"{model.config.name}: epoch {epoch}/{cfg.epochs_used} took {stats.epoch_s / 60:.1f} min; "
            f"about {left:.0f} min of training left",
            file=sys.stderr,
            flush=True,
        )

    if not world.is_main:
        return None
    eval_started = time.perf_counter()
    final = evaluate(model, dataset, device, cfg.eval_batch_size)
    test = final.splits["test"]
    scored = Scored(
        final.test_scores,
        final.test_same.astype(bool),
        None,
        final.threshold,
        model.higher_is_same,
        model.config.name,
        f"checkpoint {ckpt_path}",
    )
    summary = TrainingSummary(
        data_set=dataset.name,
        split=f"train: {dataset.info.get('train_pairs', 'synthetic train identities')}; "
        f"test: {dataset.info.get('test_pairs', 'synthetic test identities')}",
        variant=cfg.variant,
        head=model.config.head,
        image_size=image_size,
        accuracy=test.accuracy,
        threshold=final.threshold,
        threshold_on=final.threshold_on,
        auc=test.auc,
        eer=test.eer,
        n_test_pairs=test.n_pairs,
        epochs=len(history),
        wall_time_s=round(sum(h.epoch_s for h in history) + time.perf_counter() - eval_started, 1),
        processes=world.world_size,
        train_people=list(dataset.people),
        val_accuracy=final.figure("val", "accuracy"),
        val_auc=final.figure("val", "auc"),
        train_accuracy=final.figure("train", "accuracy"),
        tar_at_far=report(scored, dataset.info.get("test_pairs", "synthetic test pairs"), out).tar_at_far,
        git_commit=commit,
        command=cfg.command or None,
        host=host(),
        finished=utc_now(),
        rank_weights_sha256=rank_digests,
        config=cfg.to_dict(),
        data=dataset.info,
    )
    save_checkpoint(
        ckpt_path,
        make_checkpoint(model, optimizer, len(history), cfg, g, dataset.info, history, final.threshold, summary),
    )
    write_json(out / "summary.json", summary.to_dict())
    return summary


def results_table(summaries: list[TrainingSummary]) -> str:
    def figure(value) -> str:
        return "-" if value is None else f"{value:.4f}"

    header = (
        "| data set | variant | head | epochs | val accuracy | val AUC | test accuracy | AUC | EER "
        "| TAR@FAR 1e-2 | TAR@FAR 1e-3 | threshold | wall time |"
    )
    rows = [header, "|" + "---|" * (header.count("|") - 1)]
    for s in summaries:
        far = s.tar_at_far
        rows.append(
            f"| {s.data_set} | {s.variant} | {s.head if s.variant == 'bce' else '-'} | {s.epochs} | "
            f"{figure(s.val_accuracy)} | {figure(s.val_auc)} | {s.accuracy:.4f} | {s.auc:.4f} | "
            f"{s.eer:.4f} | {figure(far.get('0.01'))} | {figure(far.get('0.001'))} | {s.threshold:.4g} | "
            f"{s.wall_time_s:.0f} s |"
        )
    return "\n".join(rows)


def main(cfg: TrainConfig, variants: list[str]) -> list[TrainingSummary]:
    if cfg.head not in (None, "concat") and "bce" not in variants:
        raise SiameseError(f"--head {cfg.head} is a bce head; the contrastive variant compares distances")
    world = from_environment()
    locks = contextlib.ExitStack()
    try:
        cfg = replace(cfg, device=world.device(cfg.device))
        resolve_device(cfg.device)
        synthetic = data_source(cfg) is None
        data_set = "synthetic" if synthetic else "lfw"
        cfg = replace(cfg, crop=cfg.crop_for(data_set))  # recorded as trained, whatever the default becomes
        runs = [cfg.for_variant(v) for v in variants]
        for run in runs:
            if world.is_main:  # one training per run folder: a second fails at once, nothing is overwritten
                folder = run_dir(run, data_set)
                locks.enter_context(exclusive_lock(folder.with_name(f".{folder.name}.lock"), f"run {folder}"))
            check_run(run, data_set, cfg.image_size or (32 if synthetic else SPEC_IMAGE_SIZE))
        dataset = load_on_main_first(cfg, world)
        summaries = [train_variant(run, dataset, world) for run in runs]
        world.barrier()  # the other ranks wait for rank 0's evaluation before the group closes
    finally:
        locks.close()
        world.close()
    if not world.is_main:
        return []
    print(results_table(summaries))
    return summaries


def load_on_main_first(cfg: TrainConfig, world: Distributed) -> Dataset:
    """The data set, loaded by rank 0 before the others: an archive is unpacked into the cache
    once, and the other ranks read what it left there."""
    if not world.is_main:
        world.barrier()
    dataset = load_dataset(cfg)
    if world.is_main:
        world.barrier()
    return dataset
