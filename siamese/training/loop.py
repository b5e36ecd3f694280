"""Training and evaluation, torchvision-references style: plain functions and `main(cfg)`.

One run trains one variant and writes, under `<out>/<data set>/<variant>[-<head>]/`:
`checkpoint.pt` (every epoch, atomically), `metrics.jsonl` (one line per epoch),
`roc.png` and `summary.json` (after the final evaluation).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from siamese.artifacts.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from siamese.artifacts.records import TrainingSummary
from siamese.core.errors import SiameseError
from siamese.core.files import append_line, check_writable, write_json, write_text
from siamese.core.metrics import best_threshold, verification_metrics
from siamese.core.model import ModelConfig, SiameseNet, all_pairs_loss, pair_loss
from siamese.core.preprocess import NORMALIZATION, normalize, to_model_input
from siamese.core.provenance import cxx_compiler, git_commit, native_bf16
from siamese.data.augment import AugmentConfig, augment
from siamese.data.lfw import Dataset, IdentityBatch, ImageBank, PairSet, find_lfw, load_lfw
from siamese.tasks.evaluate import Scored, predict, report
from siamese.training.config import TrainConfig
from siamese.training.distributed import SINGLE_PROCESS, Distributed, from_environment, weights_digest

SYNTHETIC_BANNER = """
##############################################################################
#  NO LFW FOUND: training on the built-in SYNTHETIC face set.                #
#  Figures from this run describe synthetic faces, not LFW. For real data:   #
#    siamese-data fetch          (downloads LFW into ./cache/lfw)            #
#    siamese-train --data PATH   (an LFW folder or .tgz)                     #
##############################################################################
"""


def resolve_amp(amp: str, device: torch.device) -> str:
    """The training steps' precision on `device`: "auto" becomes "bf16" or "none"."""
    if amp != "auto":
        return amp
    return "bf16" if native_bf16(device) else "none"


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
    """The LFW folder or archive to train on; None: the synthetic set."""
    return Path(cfg.data) if cfg.data else (None if cfg.synthetic else find_lfw(Path(cfg.cache)))


def _load_data(cfg: TrainConfig) -> Dataset:
    from siamese.data.synthetic import make_synthetic

    data = data_source(cfg)
    if data is None:
        print(SYNTHETIC_BANNER, file=sys.stderr)
        return make_synthetic(image_size=cfg.image_size or 32, seed=cfg.seed)
    return load_lfw(
        data,
        cfg.image_size or 128,
        Path(cfg.train_pairs) if cfg.train_pairs else None,
        Path(cfg.test_pairs) if cfg.test_pairs else None,
        cache_dir=Path(cfg.cache),
        limit=cfg.limit_pairs,
    )


def pair_batch(bank: ImageBank, rows: torch.Tensor, device: torch.device, aug: AugmentConfig | None, g) -> torch.Tensor:
    """Bank rows -> normalised (N, 3, S, S) float on the device, augmented if `aug`."""
    images = bank.images[rows].to(device, non_blocking=True)
    if aug is None:
        return to_model_input(images, NORMALIZATION)
    x = images.permute(0, 3, 1, 2).float().div_(255)
    return normalize(augment(x, aug, g), NORMALIZATION)


def epoch_pairs(dataset: Dataset, cfg: TrainConfig, g: torch.Generator) -> PairSet:
    n = len(dataset.train) if cfg.pairs_per_epoch is None else cfg.pairs_per_epoch
    pairs = dataset.train if n == 0 else dataset.draw_pairs(n, g)
    order = torch.randperm(len(pairs), generator=g)
    return PairSet(pairs.a[order], pairs.b[order], pairs.same[order])


def epoch_batches(dataset: Dataset, cfg: TrainConfig, g: torch.Generator) -> list[PairSet | IdentityBatch]:
    if cfg.sampling == "identity":
        return dataset.identity_batches(cfg.identities_per_batch, cfg.images_per_identity, g)
    pairs = epoch_pairs(dataset, cfg, g)
    # a batch of one would break BatchNorm's training statistics
    starts = [i for i in range(0, len(pairs), cfg.batch_size) if len(pairs) - i >= 2]
    return [
        PairSet(pairs.a[i : i + cfg.batch_size], pairs.b[i : i + cfg.batch_size], pairs.same[i : i + cfg.batch_size])
        for i in starts
    ]


def training_embedding(model: SiameseNet, cfg: TrainConfig, device: torch.device) -> Callable:
    """The embedding network as training steps call it: compiled or eager, per `cfg.compile`.

    The compiled callable shares the model's parameters, so checkpoints keep their plain keys;
    evaluation calls the eager network, whose few shapes are not worth a compile.
    """
    if cfg.compile == "off" or (cfg.compile == "auto" and device.type == "cpu" and not cxx_compiler()):
        return model.embed
    if device.type == "cpu" and not cxx_compiler():
        raise SiameseError("--compile on needs a C++ compiler for Inductor's CPU kernels (apt install g++)")
    # batch sizes vary (P x K batches of people with few images): one recompile to a dynamic batch
    return torch.compile(model.embedding, dynamic=None)


class StepLoss(nn.Module):
    """A training step's loss from its images, as one module: DistributedDataParallel wraps it,
    so every parameter the step uses (the embedding, and the bce head) has its gradient averaged.

    forward(images, target, identity_batch): `images` (N, 3, S, S); `target` is each image's
    identity (identity batches: the loss over every pair inside) or, for fixed pairs whose
    images are stacked as [a; b], each pair's same-person label.
    """

    def __init__(self, model: SiameseNet, embed: Callable, negatives: str, amp: str):
        super().__init__()
        if amp not in ("none", "bf16"):
            raise ValueError(f"amp {amp!r}: resolve it for a device first (resolve_amp)")
        self.model, self.embed, self.negatives, self.amp = model, embed, negatives, amp

    def forward(self, images: torch.Tensor, target: torch.Tensor, identity_batch: bool) -> torch.Tensor:
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.amp == "bf16"):
            features = self.embed(images)  # fixed pairs: both sides in one pass, as SiameseNet.forward
            if identity_batch:
                return all_pairs_loss(self.model, features.float(), target, self.negatives)
            raw = self.model.compare(*features.chunk(2))
        return pair_loss(self.model, raw.float(), target)


def distributed_step(model: SiameseNet, cfg: TrainConfig, device: torch.device, world: Distributed) -> nn.Module:
    """The training step's loss module; under torchrun wrapped in DistributedDataParallel.

    BatchNorm stays per rank unless `cfg.sync_bn`: each rank's batch is a whole P x K batch,
    as large as a single process's, so its statistics are those a single process would use.
    """
    if world.enabled and cfg.sync_bn:
        if device.type != "cuda":
            raise SiameseError("--sync-bn needs CUDA (NCCL): PyTorch's SyncBatchNorm has no CPU implementation")
        model.embedding = nn.SyncBatchNorm.convert_sync_batchnorm(model.embedding)
    step = StepLoss(model, training_embedding(model, cfg, device), cfg.negatives_used, cfg.amp)
    if not world.enabled:
        return step
    # broadcast_buffers (the default) hands rank 0's BatchNorm running statistics to every rank
    return DistributedDataParallel(step, device_ids=[device.index] if device.type == "cuda" else None)


def check_ranks_agree(model: SiameseNet, world: Distributed, epoch: int) -> list[str]:
    """Every rank's weights digest; they must all be equal after an epoch, or training is broken."""
    if not world.enabled:
        return []
    world.broadcast_buffers(model)
    digests = world.gather(weights_digest(model))
    if len(set(digests)) > 1:
        raise SiameseError(f"after epoch {epoch} the ranks' weights differ: {', '.join(d[:12] for d in digests)}")
    return digests


def batch_loss(step: nn.Module, batch: PairSet | IdentityBatch, bank: ImageBank, device, aug, g):
    """(loss, pairs it averages, images it embedded) of one training step."""
    if isinstance(batch, IdentityBatch):
        n = len(batch.rows)
        loss = step(pair_batch(bank, batch.rows, device, aug, g), batch.identity.to(device), True)
        return loss, n * (n - 1) // 2, n
    images = torch.cat([pair_batch(bank, rows, device, aug, g) for rows in (batch.a, batch.b)])
    return step(images, batch.same.to(device), False), len(batch), 2 * len(batch)


def learning_rate(cfg: TrainConfig, progress: float) -> float:
    """Linear warm-up over the first `cfg.warmup` of the run, then cosine decay to 0 (or constant)."""
    if progress < cfg.warmup:
        return cfg.lr * progress / cfg.warmup
    if cfg.schedule == "constant":
        return cfg.lr
    rest = (progress - cfg.warmup) / max(1 - cfg.warmup, 1e-12)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(rest, 1.0)))


def train_one_epoch(
    model: SiameseNet,
    optimizer,
    dataset: Dataset,
    cfg: TrainConfig,
    device,
    g: torch.Generator,
    epoch: int,
    step_loss: nn.Module | None = None,
    world: Distributed = SINGLE_PROCESS,
) -> dict:
    """One epoch; under torchrun this rank's shard of it. The figures returned are summed over
    every rank, so rank 0 logs the whole epoch."""
    model.train()
    step_loss = step_loss or StepLoss(model, model.embed, cfg.negatives_used, resolve_amp(cfg.amp, device))
    # every rank draws the same batches from `g` and keeps its shard; augmentation draws differ
    # per rank, from a generator of their own, so that `g` stays alike on every rank
    batches = world.shard(epoch_batches(dataset, cfg, g))
    aug_g = torch.Generator().manual_seed(cfg.seed * 10**6 + epoch * 10**3 + world.rank) if world.enabled else g
    aug = AugmentConfig() if cfg.augment else None
    total_loss, seen, images, start = 0.0, 0, 0, time.perf_counter()
    lr = optimizer.param_groups[0]["lr"]
    quiet = None if world.is_main else True  # None: tqdm's own choice (off when not a terminal)
    bar = tqdm(batches, desc=f"{model.config.name} epoch {epoch}", unit="batch", leave=False, disable=quiet)
    for step, batch in enumerate(bar):
        lr = learning_rate(cfg, (epoch - 1 + step / len(batches)) / cfg.epochs_used)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, n_pairs, n_images = batch_loss(step_loss, batch, dataset.bank, device, aug, aug_g)
        # summed over ranks before the check, so that all stop together rather than some waiting forever
        batch_total, n_pairs, n_images = world.sum([loss.item() * n_pairs, n_pairs, n_images])
        if not math.isfinite(batch_total):
            raise SiameseError(f"{model.variant}: loss became {batch_total / n_pairs} at epoch {epoch}, batch {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += batch_total
        seen += int(n_pairs)
        images += int(n_images)
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", images_per_s=f"{images / (time.perf_counter() - start):.1f}")
    elapsed = time.perf_counter() - start
    return {
        "epoch": epoch,
        "train_loss": total_loss / max(seen, 1),
        "pairs": seen,
        "images": images,
        "images_per_s": images / elapsed,
        "lr_end": lr,
        "epoch_s": elapsed,
    }


def validate(model: SiameseNet, dataset: Dataset, device, batch_size: int = 64) -> dict:
    """Accuracy (at the validation pairs' own best threshold) and AUC on the held-out people."""
    if dataset.val is None:
        return {}
    scores = predict(model, dataset.bank, dataset.val, device, batch_size)
    same = dataset.val.same.numpy()
    threshold = best_threshold(scores, same, model.higher_is_same)
    figures = verification_metrics(scores, same, threshold, model.higher_is_same)
    return {"val_accuracy": figures.accuracy, "val_auc": figures.auc}


def evaluate(model: SiameseNet, dataset: Dataset, device, batch_size: int = 64) -> tuple[dict, dict]:
    """Threshold chosen on the validation pairs (held-out training identities) when there are
    some, else on the training pairs; then applied, once, to the test pairs."""
    chosen_on = dataset.val if dataset.val is not None else dataset.train
    scores = {"chosen": predict(model, dataset.bank, chosen_on, device, batch_size)}
    threshold = best_threshold(scores["chosen"], chosen_on.same.numpy(), model.higher_is_same)
    results = {
        "threshold": threshold,
        "threshold_on": "validation pairs" if dataset.val is not None else "training pairs",
    }
    for split in ("train", "val", "test"):
        pairs = getattr(dataset, split)
        if pairs is None or len(pairs.same.unique()) < 2:
            continue
        scores[split] = (
            scores["chosen"] if pairs is chosen_on else predict(model, dataset.bank, pairs, device, batch_size)
        )
        results[split] = verification_metrics(
            scores[split], pairs.same.numpy(), threshold, model.higher_is_same
        ).to_dict()
    curves = {"test_scores": scores["test"], "test_same": dataset.test.same.numpy()}
    return results, curves


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
    )


def metrics_line(stats: dict) -> str:
    """One epoch's line of metrics.jsonl, floats rounded for reading."""
    return json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in stats.items()})


def run_dir(cfg: TrainConfig, dataset_name: str) -> Path:
    return Path(cfg.out) / dataset_name / ModelConfig(cfg.variant, head=cfg.head).name


def check_run(cfg: TrainConfig, dataset_name: str, image_size: int) -> None:
    """Refuse, before any data is decoded, a run that would overwrite a checkpoint, resume a
    different model, or write into a folder it cannot write."""
    model_config = ModelConfig(cfg.variant, image_size, cfg.margin, cfg.head)
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
    check_writable(ckpt_path.parent)


def train_variant(cfg: TrainConfig, dataset: Dataset, world: Distributed = SINGLE_PROCESS) -> TrainingSummary | None:
    """Train one variant on an already loaded data set; returns its summary (rank 0; None elsewhere)."""
    device = resolve_device(cfg.device)
    cfg = replace(cfg, amp=resolve_amp(cfg.amp, device))  # the checkpoint and summary record what ran
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    image_size = dataset.bank.images.shape[1]
    model = SiameseNet(cfg.variant, image_size, cfg.margin, cfg.head).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    out = run_dir(cfg, dataset.name)
    ckpt_path = out / "checkpoint.pt"
    history, start_epoch, rank_digests = [], 1, []
    check_run(cfg, dataset.name, image_size)
    if cfg.resume and ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, map_location=device)
        model.load_state_dict(ckpt.model)
        optimizer.load_state_dict(ckpt.optimizer)
        g.set_state(ckpt.rng["generator"])
        torch.set_rng_state(ckpt.rng["torch"])
        history, start_epoch = ckpt.history, ckpt.epoch + 1
        print(f"resuming {cfg.variant} from {ckpt_path} after epoch {ckpt.epoch}", file=sys.stderr)

    metrics_log = out / "metrics.jsonl"
    if history and world.is_main:
        # the checkpoint's history is the record: a run killed between saving an epoch and
        # logging it would otherwise resume with that epoch missing from the log
        write_text(metrics_log, "".join(metrics_line(h) + "\n" for h in history))
    step_loss = distributed_step(model, cfg, device, world)
    for epoch in range(start_epoch, cfg.epochs_used + 1):
        stats = {
            "variant": cfg.variant,
            "head": model.config.head,
            "data_set": dataset.name,
            **train_one_epoch(model, optimizer, dataset, cfg, device, g, epoch, step_loss, world),
        }
        rank_digests = check_ranks_agree(model, world, epoch)
        if not world.is_main:
            continue
        stats |= validate(model, dataset, device, cfg.eval_batch_size)
        history.append(stats)
        save_checkpoint(ckpt_path, make_checkpoint(model, optimizer, epoch, cfg, g, dataset.info, history))
        # after the checkpoint: a run killed in between logs no epoch that a resume would train again
        line = metrics_line(stats)
        print(line, flush=True)
        append_line(metrics_log, line)

    if not world.is_main:
        return None
    eval_started = time.perf_counter()
    results, curves = evaluate(model, dataset, device, cfg.eval_batch_size)
    scored = Scored(
        curves["test_scores"],
        curves["test_same"].astype(bool),
        None,
        results["threshold"],
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
        accuracy=results["test"]["accuracy"],
        threshold=results["threshold"],
        threshold_on=results["threshold_on"],
        auc=results["test"]["auc"],
        eer=results["test"]["eer"],
        n_test_pairs=results["test"]["n_pairs"],
        epochs=len(history),
        wall_time_s=round(sum(h["epoch_s"] for h in history) + time.perf_counter() - eval_started, 1),
        processes=world.world_size,
        val_accuracy=results.get("val", {}).get("accuracy"),
        val_auc=results.get("val", {}).get("auc"),
        train_accuracy=results.get("train", {}).get("accuracy"),
        tar_at_far=report(scored, dataset.info.get("test_pairs", "synthetic test pairs"), out).tar_at_far,
        git_commit=git_commit(),
        rank_weights_sha256=rank_digests,
        config=cfg.to_dict(),
        data=dataset.info,
    )
    save_checkpoint(
        ckpt_path,
        make_checkpoint(model, optimizer, len(history), cfg, g, dataset.info, history, results["threshold"], summary),
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
    if cfg.head != "concat" and "bce" not in variants:
        raise SiameseError(f"--head {cfg.head} is a bce head; the contrastive variant compares distances")
    world = from_environment()
    try:
        cfg = replace(cfg, device=world.device(cfg.device))
        resolve_device(cfg.device)
        runs = [cfg.for_variant(v) for v in variants]
        synthetic = data_source(cfg) is None
        for run in runs:
            check_run(run, "synthetic" if synthetic else "lfw", cfg.image_size or (32 if synthetic else 128))
        dataset = load_on_main_first(cfg, world)
        summaries = [train_variant(run, dataset, world) for run in runs]
        world.barrier()  # the other ranks wait for rank 0's evaluation before the group closes
    finally:
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
