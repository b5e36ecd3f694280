"""The training configuration: one dataclass whose fields are also `siamese-train`'s options.

A field with a "help" in its metadata is a command-line option (`--field-name`), with the
field's default and its metadata's click type (siamese.core.params.option); nothing
about an option is written a second time in the CLI. Needs no torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import click

from siamese.core.files import DEFAULT_CACHE
from siamese.core.model import HEADS, NEGATIVES
from siamese.core.params import Device, FiniteFloat, ImageSize, Seed, option
from siamese.core.spec import MAX_BATCH
from siamese.detect.framing import MIN_CROP

# chosen on validation (README, recipe search): hardest negatives help the contrastive loss
# and hurt the bce head (64 px proxy: 0.609 against 0.703 with all negatives)
VARIANT_NEGATIVES = {"contrastive": "hard", "bce": "all"}
# each within 2 hours on a 2-core CPU where bf16 is native (Zen 4: 4.4-4.9 min an epoch, so
# 90-100 min a run); in fp32 on an AVX2 CPU about 3 times that (README, docs/training.md)
VARIANT_EPOCHS = {"contrastive": 20, "bce": 20}
# chosen on validation (docs/training.md: 64 px proxy and full size): a tighter view of the face
LFW_CROP = 0.8
# recipe options added after runs were recorded: what a checkpoint without them trained with
RECORDED_BEFORE = {"crop": 1.0}
DEFAULT_BCE_HEAD = "diff-prod"  # the spec's concat head cannot compare two faces (training docs)
PATH = click.Path(path_type=Path)
# what a run trains with: a resume may change the others (--epochs, --device, --out, ...) freely
RECIPE = (
    "head", "data", "synthetic", "train_pairs", "test_pairs", "image_size", "sampling",
    "crop", "identities_per_batch", "images_per_identity", "negatives", "batch_size", "lr", "warmup",
    "schedule", "weight_decay", "margin", "augment", "pairs_per_epoch", "limit_pairs",
    "val_identities", "val_pairs", "seed", "sync_bn",
)  # fmt: skip


@dataclass
class TrainConfig:
    variant: str = "bce"  # one run's variant; siamese-train's --variant chooses which runs (or both)
    command: str = ""  # the command line, as the results record it (set by siamese-train)
    head: str | None = option(
        None,
        "bce head: default diff-prod, Linear(concat(|f1 - f2|, f1 * f2)); concat is the spec's literal "
        "Linear(concat(f1, f2)), at chance by construction (see the training docs)",
        click.Choice(HEADS),
    )
    data: str | None = option(
        None,
        "LFW folder (images or .tgz plus pair files) or .tgz; default: $SIAMESE_LFW, "
        "./cache/lfw (siamese-data fetch), else the synthetic set",
        PATH,
    )
    synthetic: bool = option(False, "train on the built-in synthetic faces even if LFW is present")
    train_pairs: str | None = option(None, "pair file (any format)", PATH)
    test_pairs: str | None = option(None, "pair file (any format)", PATH)
    image_size: int | None = option(None, "default 128 on LFW (the spec), 32 on synthetic", ImageSize())
    crop: float | None = option(
        None,
        f"the centred share of each LFW frame the network sees, resized to --image-size (1: the whole "
        f"250 x 250 frame); recorded with the model, so every client frames photos alike; default {LFW_CROP} "
        "on LFW (chosen on validation), 1 on synthetic",
        FiniteFloat(MIN_CROP, 1),
    )
    epochs: int | None = option(
        None,
        "default: "
        + ", ".join(f"{n} for {v}" for v, n in VARIANT_EPOCHS.items())
        + " (90-100 min a run on a 2-core CPU with native bf16; 4-4.7 h in fp32)",
        click.IntRange(1, 10_000),
    )
    sampling: str = option(
        "identity",
        "identity: P x K batches of training people, loss over every pair in a batch; pairs: fixed pairs",
        click.Choice(["identity", "pairs"]),
    )
    # P: groups of one person's images; a batch holds about 60 images
    identities_per_batch: int = option(24, "P (identity sampling)", click.IntRange(2, 4096))
    images_per_identity: int = option(4, "K (identity sampling)", click.IntRange(2, 4096))
    negatives: str | None = option(
        None,
        "identity sampling: every different-person pair, or the hardest ones (as many as same pairs); "
        "default: hard for contrastive, all for bce (chosen on validation)",
        click.Choice(NEGATIVES),
    )
    batch_size: int = option(32, "pairs per step (pair sampling)", click.IntRange(2, MAX_BATCH))
    lr: float = option(3e-4, "peak learning rate (AdamW)", FiniteFloat(min=0, min_open=True))
    warmup: float = option(0.05, "share of the run warming up the LR", FiniteFloat(0, 1, max_open=True))
    schedule: str = option("cosine", "LR after warm-up", click.Choice(["cosine", "constant"]))
    weight_decay: float = option(0.0, "decoupled (AdamW)", FiniteFloat(min=0))
    # contrastive: twice the RMS distance between BatchNorm'd 1024-d features, 2 * sqrt(2 * 1024);
    # the validation sweep preferred it to 1x (README)
    margin: float = option(90.0, "contrastive margin", FiniteFloat(min=0, min_open=True))
    augment: bool = option(True, "random flips, crops and colour changes of training images")
    pairs_per_epoch: int | None = option(
        None,
        "pairs drawn per epoch from training identities; default the training list's size; "
        "0 trains on the training list itself",
        click.IntRange(0, 100_000_000),
    )
    limit_pairs: int | None = option(None, "use only this many pairs of each list", click.IntRange(2, 100_000_000))
    val_identities: float = option(
        0.1,
        "share of training identities (people) held out to choose the threshold on; 0: use the training pairs",
        FiniteFloat(0, 1, max_open=True),
    )
    val_pairs: int = option(1000, "validation pairs drawn among them", click.IntRange(2, 1_000_000))
    seed: int = option(0, "seed of initialisation, sampling and augmentation", Seed)
    device: str = option("auto", "auto (CUDA if present), cpu, cuda, cuda:1, ...", Device())
    # bf16 is the fastest correct mode measured where the device computes it natively (README)
    amp: str = option(
        "auto",
        "bf16 autocast for training steps (evaluation stays fp32); auto: bf16 where the device computes "
        "it natively (GPUs, AVX-512 bf16 or AMX CPUs), else fp32",
        click.Choice(["auto", "none", "bf16"]),
    )
    compile: str = option(
        "auto",
        "torch.compile the network for training steps; auto: where Inductor can (CUDA, or a C++ compiler)",
        click.Choice(["auto", "on", "off"]),
    )
    sync_bn: bool = option(
        False, "under torchrun on GPUs: BatchNorm statistics over all ranks' batches (default: each rank's own)"
    )
    out: str = option("runs", "run folder root", PATH)
    cache: str = option(str(DEFAULT_CACHE), "cache folder (extracted archives)", PATH)
    resume: bool = option(False, "continue from <out>/<data set>/<variant>/checkpoint.pt")
    allow_recipe_change: bool = option(
        False,
        "with --resume: train on although recipe options (--lr, --sampling, --augment, ...) differ from "
        "the checkpoint's; the change is recorded in the first epoch it applies to",
    )
    eval_batch_size: int = 64
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def recipe_changes(self, recorded: dict) -> dict[str, list]:
        """{option: [recorded, now]} for each recipe option that differs from a checkpoint's
        recorded configuration (a resumed run must not silently train on another recipe)."""
        before = {**RECORDED_BEFORE, **recorded}
        return {
            name: [before[name], getattr(self, name)]
            for name in RECIPE
            if name in before and before[name] != getattr(self, name)
        }

    def crop_for(self, data_set: str) -> float:
        return self.crop if self.crop is not None else LFW_CROP if data_set == "lfw" else 1.0

    @property
    def negatives_used(self) -> str:
        return self.negatives or VARIANT_NEGATIVES[self.variant]

    @property
    def head_used(self) -> str:
        return "concat" if self.variant != "bce" else self.head or DEFAULT_BCE_HEAD

    @property
    def epochs_used(self) -> int:
        return self.epochs or VARIANT_EPOCHS[self.variant]

    def for_variant(self, variant: str) -> TrainConfig:
        """This configuration for one variant: its own head, negatives and epochs, unless chosen."""
        run = replace(self, variant=variant)
        run = replace(run, head=run.head_used)
        return replace(run, negatives=run.negatives_used, epochs=run.epochs_used)
