"""An export folder as a reader sees it: its manifest, its metadata, and verified files.

Needs only the standard library: every runtime (`siamese.backends`) opens an export through
`ExportFolder`, and `ExportFolder.check` refuses a file that is missing, truncated or modified
before any runtime reads it. What a runtime loads is a private copy whose bytes are the ones
that were hashed: a file swapped or rewritten in the export after the check never loads.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from siamese.artifacts.formats import DTYPES, FORMATS, artifact_name
from siamese.artifacts.records import TrainedOn
from siamese.core.errors import SiameseError, first_line
from siamese.core.files import copy_hashed, read_limited, scratch_folder
from siamese.core.preprocess import Normalization
from siamese.core.records import require
from siamese.core.spec import (
    GRAPH_INPUTS,
    GRAPH_OUTPUTS,
    HEADS,
    VARIANTS,
    higher_is_same,
    image_size_problem,
    model_name,
)
from siamese.detect.framing import Framing

MANIFEST = "manifest.json"
# the temp-directory folders that hold the verified copies runtimes load
PRIVATE_COPIES = "siamese-export-"
METADATA = "metadata.json"
SIGNATURE = "manifest.sig"  # HMAC-SHA256 of manifest.json's bytes, with a key the user holds
MIN_KEY_BYTES = 16
DEFAULT_MARKER = "DEFAULT"  # in the exports folder: the name of the export readers use without --export
MAX_WEIGHTS_HEADER = 16 << 20  # a safetensors header of names, shapes and offsets: kilobytes in practice
UNTRUSTED = (
    "artifacts can run code when loaded (pickled objects or a native library); "
    "pass --trust-export only for an export you made or got from someone you trust"
)
# the fp32 weights of the checkpoint, as tensors only: eager runtimes and the parity reference
# rebuild the network from this file, so neither ever unpickles anything from an export
WEIGHTS = "weights.safetensors"
# each graph's model name in a Triton repository and on a siamese-serve server
TRITON_MODELS = {"embedding": "siamese_embedding", "compare": "siamese_compare", "pair": "siamese_pair"}


def path_component(name: str, what: str) -> str:
    """`name` if it is one plain file or folder name (no separator, no `..`, not hidden), else an error.

    Export folder names come from `--name` and from a checkpoint's data-set string, and the
    files of an export from its manifest: none of them may reach outside their folder.
    """
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}", name):
        raise SiameseError(
            f"{what} {name!r} is not a plain name: use letters, digits and . _ + - "
            "(starting with a letter or digit, at most 128 characters)"
        )
    return name


def read_key(path: Path) -> bytes:
    """A signing key: the raw bytes of a file the user keeps private (e.g. `head -c 32 /dev/urandom`)."""
    key = read_limited(path, "signing key")
    if len(key) < MIN_KEY_BYTES:
        raise SiameseError(f"signing key {path} holds {len(key)} bytes; use at least {MIN_KEY_BYTES} random bytes")
    return key


def manifest_mac(manifest_bytes: bytes, key: bytes) -> str:
    return hmac.new(key, manifest_bytes, hashlib.sha256).hexdigest()


def sign_manifest(folder: Path, key: bytes) -> None:
    """Write the signature of the folder's manifest: the manifest hashes every file, so this signs them all."""
    mac = manifest_mac(read_limited(Path(folder) / MANIFEST, "manifest"), key)
    (Path(folder) / SIGNATURE).write_text(json.dumps({"algorithm": "hmac-sha256", "mac": mac}) + "\n")


def check_signature(folder: Path, manifest_bytes: bytes, key: bytes) -> None:
    file = Path(folder) / SIGNATURE
    if not file.is_file():
        raise SiameseError(f"{folder}: not signed (no {SIGNATURE}), but a key was given to verify it")
    try:
        signature = json.loads(read_limited(file, "signature"))
        mac, algorithm = signature["mac"], signature["algorithm"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SiameseError(f"{file}: unreadable signature ({type(exc).__name__})") from None
    if algorithm != "hmac-sha256" or not isinstance(mac, str):
        raise SiameseError(f"{file}: unknown signature algorithm {algorithm!r}")
    if not hmac.compare_digest(mac, manifest_mac(manifest_bytes, key)):
        raise SiameseError(f"{file}: signature does not match: the export was modified, or signed with another key")


@dataclass(frozen=True)
class ExportMetadata:
    """What every tool needs to know about an export, read and checked in one place."""

    variant: str
    threshold: float
    higher_is_same: bool
    margin: float
    image_size: int
    dtype: str
    normalization: Normalization
    graphs: dict  # graph -> {"inputs": [...], "outputs": [...]}: siamese.core.spec's names
    head: str = "concat"  # the bce head (siamese.core.model.HEADS); exports before heads existed have the spec's
    training: TrainedOn = TrainedOn("unknown")
    framing: Framing = Framing()  # how a photo becomes the graph's input (siamese.detect.framing)
    raw: dict = field(default_factory=dict, repr=False)  # everything, as written

    @classmethod
    def from_dict(cls, d: dict, source: str) -> ExportMetadata:
        threshold = float(require(d, "threshold", float, source))
        dtype = require(d, "dtype", str, source)
        if dtype not in DTYPES:
            raise SiameseError(f"{source}: dtype {dtype!r} is not one of {', '.join(DTYPES)}")
        image_size = require(d, "image_size", int, source)
        if problem := image_size_problem(image_size):
            raise SiameseError(f"{source}: image_size {problem}")
        variant, head = require(d, "variant", str, source), require(d, "head", str, source, "concat")
        if variant not in VARIANTS or head not in HEADS:
            raise SiameseError(f"{source}: unknown variant {variant!r} or head {head!r}")
        if require(d, "higher_is_same", bool, source) != higher_is_same(variant):
            raise SiameseError(f"{source}: higher_is_same contradicts the {variant} variant")
        margin = float(require(d, "margin", float, source))
        if margin <= 0:
            raise SiameseError(f"{source}: margin {margin} is not a positive finite number")
        training = require(d, "training", dict, source, {"data_set": "unknown"})
        try:
            normalization = Normalization.from_dict(require(d, "normalization", dict, source))
        except (KeyError, TypeError, ValueError) as exc:
            raise SiameseError(f"{source}: normalization: {exc}") from None
        trained_on = TrainedOn.from_dict(training, f"{source}: training")
        framing = (
            Framing.from_dict(d["framing"], source)
            if "framing" in d
            else Framing.for_data_set(trained_on.data_set, aligned=False)
        )  # exports before framing existed: their data set's, by the box as then
        graphs = require(d, "graphs", dict, source)
        expected = {g: {"inputs": GRAPH_INPUTS[g], "outputs": GRAPH_OUTPUTS[g]} for g in GRAPH_INPUTS}
        if graphs != expected:
            raise SiameseError(f"{source}: graphs {json.dumps(graphs)[:200]} are not the exported graphs {expected}")
        return cls(
            variant=variant,
            threshold=threshold,
            higher_is_same=higher_is_same(variant),
            margin=margin,
            image_size=image_size,
            dtype=dtype,
            normalization=normalization,
            graphs=graphs,
            head=head,
            training=trained_on,
            framing=framing,
            raw=d,
        )

    @property
    def name(self) -> str:
        """The variant, and the head when it is not the spec's (as siamese.core.model.ModelConfig.name)."""
        return model_name(self.variant, self.head)

    def inputs(self, graph: str) -> list[str]:
        return list(self.graphs[graph]["inputs"])

    def outputs(self, graph: str) -> list[str]:
        return list(self.graphs[graph]["outputs"])


@dataclass(frozen=True)
class ExportPolicy:
    """How a tool may open exports: load code-carrying artifacts or not, and the key that must have signed them."""

    trust_code: bool = False
    key: bytes | None = None

    @classmethod
    def from_options(cls, trust_export: bool = False, key_file: Path | None = None) -> ExportPolicy:
        return cls(trust_export, read_key(key_file) if key_file else None)

    def describe(self) -> dict:
        """For reports: never the key itself."""
        return {"trust_export": self.trust_code, "signature_required": self.key is not None}


DEFAULT_POLICY = ExportPolicy()  # the default: no code-carrying artifact loads, no key required


@dataclass
class ExportFolder:
    """An opened export. `trusted`: its code-carrying artifacts may be loaded (see `check_code`)."""

    path: Path
    manifest: dict
    metadata: ExportMetadata | None  # None only while `open` checks metadata.json
    trusted: bool = False
    key: bytes | None = field(default=None, repr=False)  # the key its signature was verified with
    _verified: dict = field(default_factory=dict, repr=False)  # name -> its private verified copy
    _private: Path | None = field(default=None, repr=False)  # where those copies live (mode 0700)
    manifest_sha256: str = ""  # of manifest.json's bytes, which hash every file: the export's identity

    @classmethod
    def open(cls, path: Path, policy: ExportPolicy = DEFAULT_POLICY) -> ExportFolder:
        """Read and check the manifest and metadata; with the policy's key, first verify the signature."""
        key = policy.key
        path = Path(path)
        if not (path / MANIFEST).is_file():
            raise SiameseError(f"{path}: not an export folder (no {MANIFEST}); run siamese-export first")
        try:
            manifest_bytes = read_limited(path / MANIFEST, "manifest")
            if key is not None:
                check_signature(path, manifest_bytes, key)
            manifest = json.loads(manifest_bytes)
        except (OSError, ValueError) as exc:
            raise SiameseError(f"{path}: unreadable manifest or metadata ({exc})") from None
        files = manifest.get("files") if isinstance(manifest, dict) else None
        if not isinstance(files, dict) or not all(
            isinstance(e, dict) and isinstance(e.get("size"), int) and isinstance(e.get("sha256"), str)
            for e in files.values()
        ):
            raise SiameseError(f"{path / MANIFEST}: has no valid 'files' table (name -> size, sha256)")
        for name in files:  # a file in a subfolder (the Triton repository) is listed as a/b/c
            for part in name.split("/"):
                path_component(part, f"{path / MANIFEST}: file {name!r}, part")
        folder = cls(path, manifest, None, trusted=policy.trust_code, key=key)
        folder.manifest_sha256 = hashlib.sha256(manifest_bytes).hexdigest()
        try:
            raw = json.loads(folder.check(METADATA).read_bytes())
        except ValueError as exc:
            raise SiameseError(f"{path / METADATA}: unreadable metadata ({exc})") from None
        folder.metadata = ExportMetadata.from_dict(raw, str(path / METADATA))
        if folder.has(WEIGHTS):
            folder._check_weights_header()
        return folder

    def _check_weights_header(self) -> None:
        """The weights' own record of the network (the safetensors header, read without torch)
        must be the one metadata.json describes: an edited metadata fails here, not in a runtime.
        (What loads is still hash-checked by `check`.)"""
        file = self.path / WEIGHTS
        if not file.is_file() or file.is_symlink():
            raise SiameseError(f"{file}: listed in {MANIFEST} but missing (or a link)")
        try:
            with open(file, "rb") as f:
                size = int.from_bytes(f.read(8), "little")
                if not 2 <= size <= MAX_WEIGHTS_HEADER:
                    raise ValueError(f"header of {size} bytes")
                header = json.loads(f.read(size))
            recorded = json.loads(header["__metadata__"]["model_config"])
            for name, tensor in header.items():
                if name != "__metadata__":
                    start, end = tensor["data_offsets"]
                    if end - start != 4 * math.prod(tensor["shape"]) or tensor["dtype"] != "F32":
                        raise ValueError(f"tensor {name} holds {end - start} bytes for shape {tensor['shape']}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SiameseError(
                f"{file}: not a weights file of this toolkit ({first_line(exc)}); re-export it"
            ) from None
        meta = self.metadata
        described = {"variant": meta.variant, "head": meta.head, "image_size": meta.image_size, "margin": meta.margin}
        differ = {k: v for k, v in described.items() if recorded.get(k, "concat" if k == "head" else None) != v}
        if differ:
            raise SiameseError(
                f"{self.path / METADATA}: describes {differ}, but {WEIGHTS} holds a network with "
                f"{ {k: recorded.get(k) for k in differ} }; the metadata was edited: re-export it"
            )

    def check(self, name: str) -> Path:
        """The verified private copy of file `name`: refused if it is missing, a link, or its size
        or sha256 differ from the manifest. Runtimes load the copy, never the export's file, so
        what was hashed is what loads; the copies go when this object does."""
        if name in self._verified:
            return self._verified[name]
        entry = self.manifest["files"].get(name)
        file = self.path / name
        if entry is None:
            raise SiameseError(f"{file}: not listed in {MANIFEST}")
        if not file.is_file() or file.is_symlink():
            raise SiameseError(f"{file}: listed in {MANIFEST} but missing (or a link)")
        copy = self._private_folder() / name
        try:
            copy.parent.mkdir(parents=True, exist_ok=True)
            size, sha256 = copy_hashed(file, copy, limit=entry["size"])
        except OSError as exc:
            copy.unlink(missing_ok=True)
            raise SiameseError(f"{file}: cannot read it into a private copy: {exc.strerror or exc}") from None
        if size != entry["size"] or sha256 != entry["sha256"]:
            copy.unlink()
            if size != entry["size"]:
                raise SiameseError(f"{file}: size {size} differs from the manifest's {entry['size']} (truncated?)")
            raise SiameseError(f"{file}: sha256 differs from the manifest (modified or corrupted); re-export it")
        self._verified[name] = copy
        return copy

    def _private_folder(self) -> Path:
        if self._private is None:
            self._private = scratch_folder(PRIVATE_COPIES, owner=self)
        return self._private

    @property
    def policy(self) -> ExportPolicy:
        """How this folder was opened, for a child process that opens it again."""
        return ExportPolicy(self.trusted, self.key)

    def check_onnx(self, name: str) -> Path:
        """`check` for an ONNX graph and every file holding its external tensors: missing or
        modified weights are named here, not by the runtime."""
        path = self.check(name)
        for data_file in onnx_external_files(path):
            self.check(data_file)
        return path

    def check_code(self, name: str) -> Path:
        """`check`, for an artifact that can run code when loaded: only in an export opened as trusted."""
        if not self.trusted:
            raise SiameseError(f"{self.path / name}: {UNTRUSTED}")
        return self.check(name)

    def sha256(self, name: str) -> str:
        return self.manifest["files"][name]["sha256"]

    def has(self, name: str) -> bool:
        return name in self.manifest["files"]

    def formats(self) -> list[str]:
        return [f for f in FORMATS if self.has(artifact_name("pair", f))]

    @property
    def image_size(self) -> int:
        return self.metadata.image_size

    def model_record(self) -> dict:
        return self.metadata.training.model_record(str(self.path), self.metadata.name, self.metadata.dtype)

    def describe(self) -> str:
        return self.metadata.training.describe(str(self.path), self.metadata.name, self.metadata.dtype)


def onnx_external_files(path: Path) -> list[str]:
    """The files an ONNX graph keeps its external tensors in (the onnx package is loaded only here)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    names = set()
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            names |= {e.value for e in tensor.external_data if e.key == "location"}
    return sorted(names)


def default_export(root: Path = Path("exports")) -> Path:
    """The export a reading command uses without --export: the one `root/DEFAULT` names (each
    `siamese-export` run names there its most accurate fp32 export of trained weights), else
    the only export of trained weights under `root`. Never an untrained one, never a guess."""
    root = Path(root)
    marker = root / DEFAULT_MARKER
    if marker.is_file():
        name = path_component(read_limited(marker, "default marker").decode(errors="replace").strip(), str(marker))
        if not (root / name / MANIFEST).is_file():
            raise SiameseError(f"{marker} names {name!r}, which is no export under {root}/: pass --export DIR")
        return root / name
    # hidden folders are exports being written or replaced (siamese.tasks.export)
    folders = sorted(p.parent for p in root.glob(f"*/{MANIFEST}") if not p.parent.name.startswith("."))
    trained = [f for f in folders if _trained(f)]
    if len(trained) == 1:
        return trained[0]
    if not folders:
        raise SiameseError(
            f"no export under {root}/: train and export first (make train, then siamese-export --format onnx), "
            "or pass --export DIR"
        )
    names = ", ".join(f.name for f in folders[:6]) + (", ..." if len(folders) > 6 else "")
    if not trained:
        raise SiameseError(f"no export of trained weights under {root}/ (only {names}): pass --export DIR to use one")
    raise SiameseError(f"several exports under {root}/ ({names}) and no {marker}: pass --export DIR")


def _trained(folder: Path) -> bool:
    try:
        return ExportFolder.open(folder).metadata.training.trained
    except SiameseError:
        return False


def set_default_export(root: Path, name: str) -> Path:
    """Make `root/name` the export reading commands use without --export."""
    from siamese.core.files import write_text

    write_text(Path(root) / DEFAULT_MARKER, path_component(name, "export name") + "\n")
    return Path(root) / name
