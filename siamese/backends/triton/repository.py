"""Triton Inference Server: a model repository written from an export's ONNX graphs.

`siamese-export --format triton` adds to the export folder:

    triton/siamese_embedding/config.pbtxt, 1/model.onnx, 1/<its weights file>   (ONNX Runtime backend)
    triton/siamese_compare/config.pbtxt,   1/model.onnx, 1/<its weights file>
    triton/siamese_pair/config.pbtxt,      1/                         (ensemble: embed a, embed b, compare)
    triton/metadata.json                                                (the export's metadata)

Each config's tensors (names, dtypes, per-item shapes) are read from the ONNX file it serves,
so the repository cannot drift from the models; the configs are built as Triton's own
`ModelConfig` protobuf (from tritonclient) and written in its text format. The graph files are
hard links to the export's own where the file system allows, so the weights take no more disk.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from siamese.artifacts.folder import TRITON_MODELS as MODEL_NAMES
from siamese.core.errors import SiameseError

VERSION = "1"
REPOSITORY = "triton"
# ONNX TensorProto element types -> Triton's data types, for what these graphs carry
TRITON_TYPES = {1: "TYPE_FP32", 2: "TYPE_UINT8", 3: "TYPE_INT8", 9: "TYPE_BOOL", 10: "TYPE_FP16", 16: "TYPE_BF16"}


def model_config_pb2():
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise SiameseError("Triton configs need tritonclient: pip install 'siamese-verify[serve]'") from None
    return model_config_pb2


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # Triton's name, e.g. TYPE_FP32
    dims: tuple[int, ...]  # per item: without the batch dimension


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


PREFERRED_LADDER = (8, 16, 64, 256)


@dataclass(frozen=True)
class ServingConfig:
    """How Triton schedules a model: batches it forms and where its instances run."""

    max_batch_size: int = 256
    preferred_batch_sizes: tuple[int, ...] = (16, 64, 256)
    max_queue_delay_us: int = 2000  # how long a request may wait for others to batch with
    instances: int = 1
    kind: str = "cpu"  # "gpu": KIND_GPU instances and ONNX Runtime's TensorRT accelerator

    def __post_init__(self):
        if self.kind not in ("cpu", "gpu"):
            raise SiameseError(f"instance kind {self.kind!r}: choose cpu or gpu")
        if self.max_batch_size < 1 or self.instances < 1:
            raise SiameseError("max batch size and instance count must be at least 1")
        too_big = [b for b in self.preferred_batch_sizes if not 1 <= b <= self.max_batch_size]
        if too_big:
            raise SiameseError(f"preferred batch sizes {too_big} lie outside 1..{self.max_batch_size}")

    @classmethod
    def up_to(cls, max_batch_size: int, **kwargs) -> ServingConfig:
        """The batches Triton prefers up to `max_batch_size`: the one ladder of siamese-export
        --format triton and siamese-serve."""
        ladder = tuple(b for b in PREFERRED_LADDER if b < max_batch_size) + (max_batch_size,)
        return cls(max_batch_size, ladder, **kwargs)


DEFAULT_SERVING = ServingConfig()


def onnx_signature(path: Path) -> Signature:
    """Names, Triton dtypes and per-item shapes of an ONNX graph whose first dimension is the batch."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {t.name for t in graph.initializer}

    def spec(value) -> TensorSpec:
        tensor = value.type.tensor_type
        dims = tensor.shape.dim
        if not dims or dims[0].dim_value:  # a dim_param (or nothing) is a dynamic batch dimension
            raise SiameseError(f"{path}: {value.name} has no dynamic batch dimension; Triton cannot batch it")
        if tensor.elem_type not in TRITON_TYPES or any(not d.dim_value for d in dims[1:]):
            raise SiameseError(f"{path}: {value.name} has a type or shape this repository cannot describe")
        return TensorSpec(value.name, TRITON_TYPES[tensor.elem_type], tuple(d.dim_value for d in dims[1:]))

    return Signature(
        tuple(spec(v) for v in graph.input if v.name not in initializers), tuple(spec(v) for v in graph.output)
    )


def _add_tensors(pb2, field, specs: tuple[TensorSpec, ...]) -> None:
    for spec in specs:
        tensor = field.add(name=spec.name, data_type=pb2.DataType.Value(spec.dtype))
        if spec.dims:
            tensor.dims.extend(spec.dims)
        else:  # one value per item: Triton wants a dimension, reshaped away for the model
            tensor.dims.append(1)
            tensor.reshape.SetInParent()


def onnx_model_config(name: str, signature: Signature, serving: ServingConfig):
    pb2 = model_config_pb2()
    config = pb2.ModelConfig(name=name, platform="onnxruntime_onnx", max_batch_size=serving.max_batch_size)
    _add_tensors(pb2, config.input, signature.inputs)
    _add_tensors(pb2, config.output, signature.outputs)
    config.dynamic_batching.preferred_batch_size.extend(serving.preferred_batch_sizes)
    config.dynamic_batching.max_queue_delay_microseconds = serving.max_queue_delay_us
    kind = pb2.ModelInstanceGroup.KIND_GPU if serving.kind == "gpu" else pb2.ModelInstanceGroup.KIND_CPU
    config.instance_group.add(count=serving.instances, kind=kind)
    if serving.kind == "gpu":
        config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
    return config


def ensemble_config(embedding: Signature, compare: Signature, pair: Signature, serving: ServingConfig):
    """The pair model: each image through the embedding model, then both features through compare."""
    pb2 = model_config_pb2()
    config = pb2.ModelConfig(name=MODEL_NAMES["pair"], platform="ensemble", max_batch_size=serving.max_batch_size)
    _add_tensors(pb2, config.input, pair.inputs)
    _add_tensors(pb2, config.output, pair.outputs)
    (image_in,), (features_out,) = embedding.inputs, embedding.outputs
    steps = config.ensemble_scheduling.step
    for image, features in zip(pair.inputs, compare.inputs, strict=True):
        step = steps.add(model_name=MODEL_NAMES["embedding"], model_version=-1)
        step.input_map[image_in.name] = image.name
        step.output_map[features_out.name] = features.name
    step = steps.add(model_name=MODEL_NAMES["compare"], model_version=-1)
    for features in compare.inputs:
        step.input_map[features.name] = features.name
    for out in compare.outputs:
        step.output_map[out.name] = out.name
    return config


def _link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(source, dest)


def write_repository(export_dir: Path, serving: ServingConfig = DEFAULT_SERVING) -> Path:
    """`<export_dir>/triton/` from the ONNX graphs in `export_dir` (before its manifest is written)."""
    from google.protobuf import text_format

    from siamese.artifacts.folder import onnx_external_files

    export_dir = Path(export_dir)
    repo = export_dir / REPOSITORY
    signatures = {}
    for graph in ("embedding", "compare"):
        source = export_dir / f"{graph}.onnx"
        if not source.is_file():
            raise SiameseError(f"{source}: a Triton repository is written from the export's ONNX graphs")
        signatures[graph] = onnx_signature(source)
        version = repo / MODEL_NAMES[graph] / VERSION
        version.mkdir(parents=True)
        _link_or_copy(source, version / "model.onnx")
        for data in onnx_external_files(source):
            _link_or_copy(export_dir / data, version / data)
        config = onnx_model_config(MODEL_NAMES[graph], signatures[graph], serving)
        (version.parent / "config.pbtxt").write_text(text_format.MessageToString(config))
    pair = onnx_signature(export_dir / "pair.onnx")
    (repo / MODEL_NAMES["pair"] / VERSION).mkdir(parents=True)  # an ensemble still needs its version folder
    config = ensemble_config(signatures["embedding"], signatures["compare"], pair, serving)
    (repo / MODEL_NAMES["pair"] / "config.pbtxt").write_text(text_format.MessageToString(config))
    shutil.copy2(export_dir / "metadata.json", repo / "metadata.json")
    return repo
