"""The training loop, torchvision-references style: plain functions from one batch's loss to
one epoch (`train_one_epoch`) and the final evaluation (`evaluate`). What a run does around them
(data, checkpoints, logs, the summary) is siamese.training.run.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from siamese.core.errors import SiameseError
from siamese.core.metrics import Verification, best_threshold, verification_metrics
from siamese.core.model import SiameseNet, all_pairs_loss, pair_loss
from siamese.core.preprocess import NORMALIZATION, normalize, to_model_input
from siamese.core.provenance import cxx_compiler, native_bf16
from siamese.data.augment import AugmentConfig, augment
from siamese.data.lfw import Dataset, IdentityBatch, ImageBank, PairSet
from siamese.tasks.evaluate import predict
from siamese.training.config import TrainConfig
from siamese.training.distributed import SINGLE_PROCESS, Distributed, weights_digest


def resolve_amp(amp: str, device: torch.device) -> str:
    """The training steps' precision on `device`: "auto" becomes "bf16" or "none"."""
    if amp != "auto":
        return amp
    return "bf16" if native_bf16(device) else "none"


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


# torch's AdamW implementations; training uses "fused": one pass over each parameter instead of
# a dozen elementwise ones. The FC layer's 134 M parameters make the update memory-bound, so
# the choice shows in the step time (docs/training.md, "Where a training step's time goes").
ADAMW_IMPLEMENTATIONS = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for-loop": {"foreach": False}}


def make_optimizer(model: nn.Module, cfg: TrainConfig, implementation: str = "fused") -> torch.optim.AdamW:
    return torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, **ADAMW_IMPLEMENTATIONS[implementation]
    )


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


@dataclass(frozen=True)
class StepInputs:
    """One training step's batch, on the device: what the loss is computed from."""

    images: torch.Tensor  # (N, 3, S, S) normalised, augmented
    labels: torch.Tensor  # identities (by_identity) or same-person flags of the N / 2 pairs
    by_identity: bool
    n_pairs: int  # pairs the loss averages


def prepare_batch(batch: PairSet | IdentityBatch, bank: ImageBank, device, aug, g) -> StepInputs:
    if isinstance(batch, IdentityBatch):
        n = len(batch.rows)
        return StepInputs(
            pair_batch(bank, batch.rows, device, aug, g), batch.identity.to(device), True, n * (n - 1) // 2
        )
    images = torch.cat([pair_batch(bank, rows, device, aug, g) for rows in (batch.a, batch.b)])
    return StepInputs(images, batch.same.to(device), False, len(batch))


def batch_loss(step: nn.Module, inputs: StepInputs):
    """(loss, pairs it averages, images it embedded) of one training step."""
    return step(inputs.images, inputs.labels, inputs.by_identity), inputs.n_pairs, len(inputs.images)


def settled(device) -> float:
    """The clock once the device has done all it was given: on CUDA the host runs ahead, and a
    batch's copy to the GPU would otherwise wait for the last step and be counted as data time."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def learning_rate(cfg: TrainConfig, progress: float) -> float:
    """Linear warm-up over the first `cfg.warmup` of the run, then cosine decay to 0 (or constant)."""
    if progress < cfg.warmup:
        return cfg.lr * progress / cfg.warmup
    if cfg.schedule == "constant":
        return cfg.lr
    rest = (progress - cfg.warmup) / max(1 - cfg.warmup, 1e-12)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(rest, 1.0)))


class LogProgress:
    """Off a terminal (a log file, CI), where tqdm's bar is off, a line per tenth of the epoch or
    per minute, whichever comes first, with the loss, images/s and the time left."""

    def __init__(self, label: str, total: int, enabled: bool, every_s: float = 60.0):
        self.label, self.total, self.enabled, self.every_s = label, total, enabled, every_s
        self.start = self.last = time.perf_counter()
        self.next_share = 0.1

    def update(self, done: int, loss: float, images: int) -> None:
        now = time.perf_counter()
        share = done / max(self.total, 1)
        if not self.enabled or done == self.total or (share < self.next_share and now - self.last < self.every_s):
            return
        self.last, self.next_share = now, share + 0.1
        elapsed = now - self.start
        left = elapsed / share - elapsed
        print(
            f"{self.label}: {share:.0%} ({done}/{self.total} batches), loss {loss:.4f}, "
            f"{images / elapsed:.1f} images/s, {left / 60:.1f} min left",
            file=sys.stderr,
            flush=True,
        )


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
    total_loss, seen, images, data_s, start = 0.0, 0, 0, 0.0, time.perf_counter()
    lr = optimizer.param_groups[0]["lr"]
    quiet = None if world.is_main else True  # None: tqdm's own choice (off when not a terminal)
    label = f"{model.config.name} epoch {epoch}"
    bar = tqdm(batches, desc=label, unit="batch", leave=False, disable=quiet)
    progress = LogProgress(label, len(batches), world.is_main and not sys.stderr.isatty())
    for step, batch in enumerate(bar):
        lr = learning_rate(cfg, (epoch - 1 + step / len(batches)) / cfg.epochs_used)
        for group in optimizer.param_groups:
            group["lr"] = lr
        started = settled(device)
        inputs = prepare_batch(batch, dataset.bank, device, aug, aug_g)
        data_s += settled(device) - started
        loss, n_pairs, n_images = batch_loss(step_loss, inputs)
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
        progress.update(step + 1, total_loss / seen, images)
    elapsed = time.perf_counter() - start
    return {
        "epoch": epoch,
        "train_loss": total_loss / max(seen, 1),
        "pairs": seen,
        "images": images,
        "images_per_s": images / elapsed,
        "lr_end": lr,
        "epoch_s": elapsed,
        "data_s": data_s,
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


@dataclass(frozen=True)
class FinalEvaluation:
    """The end of a run: the threshold chosen on validation (or training) pairs, each split's
    figures at it, and the test pairs' scores (for the plots)."""

    threshold: float
    threshold_on: str
    splits: dict[str, Verification]  # "train", "val", "test": those with both kinds of pair
    test_scores: np.ndarray
    test_same: np.ndarray

    def figure(self, split: str, name: str) -> float | None:
        return getattr(self.splits[split], name) if split in self.splits else None


def evaluate(model: SiameseNet, dataset: Dataset, device, batch_size: int = 64) -> FinalEvaluation:
    """Threshold chosen on the validation pairs (held-out training identities) when there are
    some, else on the training pairs; then applied, once, to the test pairs."""
    chosen_on = dataset.val if dataset.val is not None else dataset.train
    scores = {"chosen": predict(model, dataset.bank, chosen_on, device, batch_size)}
    threshold = best_threshold(scores["chosen"], chosen_on.same.numpy(), model.higher_is_same)
    splits = {}
    for split in ("train", "val", "test"):
        pairs = getattr(dataset, split)
        if pairs is None or len(pairs.same.unique()) < 2:
            continue
        scores[split] = (
            scores["chosen"] if pairs is chosen_on else predict(model, dataset.bank, pairs, device, batch_size)
        )
        splits[split] = verification_metrics(scores[split], pairs.same.numpy(), threshold, model.higher_is_same)
    return FinalEvaluation(
        threshold,
        "validation pairs" if dataset.val is not None else "training pairs",
        splits,
        scores["test"],
        dataset.test.same.numpy(),
    )
