"""The records that training hands to export and export to every reader: what a run achieved
(`TrainingSummary`: summary.json and the checkpoint) and what an export says of the model it
holds (`TrainedOn`: metadata.json, every report). Read with siamese.core.records.from_dict."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from siamese.core.pairs import identity_of
from siamese.core.records import from_dict, to_dict


@dataclass(frozen=True)
class EpochStats:
    """One epoch of a run: a line of metrics.jsonl and an entry of the checkpoint's history."""

    variant: str
    head: str
    data_set: str
    epoch: int
    train_loss: float
    pairs: int
    images: int
    images_per_s: float
    lr_end: float
    epoch_s: float
    # of epoch_s, the time spent drawing, augmenting and moving batches to the device (None: not measured)
    data_s: float | None = None
    val_accuracy: float | None = None  # at the validation pairs' own best threshold
    val_auc: float | None = None
    # {option: [before, after]} where a resumed run changed its recipe (--allow-recipe-change)
    recipe_changes: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d, source: str) -> EpochStats:
        return from_dict(cls, d, source)

    def to_dict(self) -> dict:
        return to_dict(self)

    def line(self) -> str:
        """Its line of metrics.jsonl, floats rounded for reading."""
        fields = {k: v for k, v in self.to_dict().items() if k != "recipe_changes" or v}
        return json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in fields.items()})


@dataclass(frozen=True)
class TrainingSummary:
    """A finished run's final evaluation: threshold chosen on validation, then the test pairs once."""

    SCHEMA = "siamese-training-summary/1"

    data_set: str
    split: str  # which pair files (or synthetic identities) trained and tested
    variant: str
    head: str
    image_size: int
    accuracy: float  # test pairs, at `threshold`
    threshold: float
    threshold_on: str
    auc: float
    eer: float
    n_test_pairs: int
    epochs: int
    wall_time_s: float  # every epoch (resumed ones included) plus the final evaluation
    processes: int
    val_accuracy: float | None = None
    val_auc: float | None = None
    train_accuracy: float | None = None
    tar_at_far: dict = field(default_factory=dict)
    git_commit: str | None = None
    command: str | None = None  # the siamese-train command line
    host: str | None = None  # the machine it trained on (siamese.core.provenance.host)
    finished: str | None = None  # UTC, ISO 8601
    rank_weights_sha256: list = field(default_factory=list)  # torchrun: every rank's final weights
    config: dict = field(default_factory=dict)  # the TrainConfig, resolved
    data: dict = field(default_factory=dict)  # the data set's description
    train_people: list = field(default_factory=list)  # whoever trained or tuned it (validation people too)

    @classmethod
    def from_dict(cls, d, source: str) -> TrainingSummary:
        return from_dict(cls, d, source)

    def to_dict(self) -> dict:
        return to_dict(self)


@dataclass(frozen=True)
class TrainedOn:
    """What an export (and every answer from it) says about how its model was trained."""

    SCHEMA = "siamese-trained-on/1"

    data_set: str  # "lfw", "synthetic", or "untrained" for random weights
    split: str | None = None
    accuracy: float | None = None  # on the test pairs, at the export's threshold
    auc: float | None = None
    eer: float | None = None
    epochs: int = 0
    people: list = field(default_factory=list)  # whoever trained or tuned it; [] where not recorded

    @classmethod
    def of(cls, summary: TrainingSummary | None, data_set: str) -> TrainedOn:
        if summary is None:
            return cls(data_set)
        return cls(
            summary.data_set, summary.split, summary.accuracy, summary.auc, summary.eer, summary.epochs,
            summary.train_people,
        )  # fmt: skip

    def seen_pairs(self, pairs: list) -> list:
        """The pairs that show a person this model was trained or tuned on."""
        seen = set(self.people)
        return [p for p in pairs if identity_of(p.a) in seen or identity_of(p.b) in seen]

    @property
    def trained(self) -> bool:
        return self.epochs > 0

    def model_record(self, where: str, model: str, dtype: str) -> dict:
        """Which model answers (`where`: its export folder or checkpoint): written beside every
        answer (verify's --output, eval.json, bench.json)."""
        return {
            "source": where,
            "model": model,
            "dtype": dtype,
            "trained_on": self.data_set if self.trained else "untrained",
            "test_accuracy": self.accuracy,
        }

    def describe(self, where: str, model: str, dtype: str) -> str:
        """The one line every command prints before its answers; an untrained model says so."""
        if not self.trained:
            return f"model: {where} ({model}, {dtype}): UNTRAINED random weights, its answers mean nothing"
        accuracy = f", test accuracy {self.accuracy:.4f}" if self.accuracy is not None else ""
        return f"model: {where} ({model}, {dtype}), trained on {self.data_set} ({self.epochs} epochs{accuracy})"

    @classmethod
    def from_dict(cls, d, source: str) -> TrainedOn:
        return from_dict(cls, d, source)

    def to_dict(self) -> dict:
        return to_dict(self)
