"""The Triton model repository: configs parsed with Triton's own protobuf schema and checked
against each model file's real signature, as ONNX Runtime reads it."""

import numpy as np
import pytest

pytest.importorskip("tritonclient", reason="the serve extra (tritonclient) is not installed")

from conftest import make_test_checkpoint  # noqa: E402
from google.protobuf import text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2 as pb2  # noqa: E402

from siamese.artifacts.folder import ExportFolder, ExportPolicy  # noqa: E402
from siamese.backends.triton.repository import MODEL_NAMES, ServingConfig  # noqa: E402
from siamese.core.errors import SiameseError  # noqa: E402
from siamese.tasks.export import export_checkpoint  # noqa: E402

ORT_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(uint8)": "TYPE_UINT8", "tensor(bool)": "TYPE_BOOL"}


@pytest.fixture(scope="module", params=["bce", "contrastive"])
def repository(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"triton-{request.param}")
    ckpt = make_test_checkpoint(tmp / "checkpoint.pt", request.param, 16)
    serving = ServingConfig(max_batch_size=64, preferred_batch_sizes=(8, 64))
    dest, _ = export_checkpoint(
        ckpt, tmp / "exports", formats=("triton",), n_pairs=4, log=print, serving=serving, untrained=True
    )
    return dest


def read_config(folder) -> pb2.ModelConfig:
    return text_format.Parse((folder / "config.pbtxt").read_text(), pb2.ModelConfig())


def served_tensors(tensors) -> list[tuple[str, str, list[int]]]:
    """(name, dtype, per-item shape the model sees) of config tensors."""
    return [
        (t.name, pb2.DataType.Name(t.data_type), list(t.reshape.shape) if t.HasField("reshape") else list(t.dims))
        for t in tensors
    ]


def ort_tensors(values) -> list[tuple[str, str, list[int]]]:
    return [(v.name, ORT_TYPES[v.type], list(v.shape[1:])) for v in values]


@pytest.mark.parametrize("graph", ["embedding", "compare"])
def test_each_onnx_model_config_matches_its_model_file(repository, graph):
    import onnxruntime

    folder = repository / "triton" / MODEL_NAMES[graph]
    config = read_config(folder)
    session = onnxruntime.InferenceSession(str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert config.name == folder.name and config.platform == "onnxruntime_onnx" and config.max_batch_size == 64
    assert all(isinstance(v.shape[0], str) for v in session.get_inputs())  # a dynamic batch dimension
    assert served_tensors(config.input) == ort_tensors(session.get_inputs())
    assert served_tensors(config.output) == ort_tensors(session.get_outputs())
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 64]
    assert [(g.count, g.kind) for g in config.instance_group] == [(1, pb2.ModelInstanceGroup.KIND_CPU)]


def test_the_pair_ensemble_wires_real_tensor_names_end_to_end(repository):
    import onnxruntime

    configs = {g: read_config(repository / "triton" / MODEL_NAMES[g]) for g in MODEL_NAMES}
    pair = configs["pair"]
    assert pair.platform == "ensemble" and (repository / "triton" / MODEL_NAMES["pair"] / "1").is_dir()
    pair_session = onnxruntime.InferenceSession(str(repository / "pair.onnx"), providers=["CPUExecutionProvider"])
    assert served_tensors(pair.input) == ort_tensors(pair_session.get_inputs())
    assert served_tensors(pair.output) == ort_tensors(pair_session.get_outputs())
    available = {t.name for t in pair.input}
    for step in pair.ensemble_scheduling.step:
        model = configs[next(g for g, n in MODEL_NAMES.items() if n == step.model_name)]
        assert set(step.input_map) == {t.name for t in model.input}  # every input of the step's model fed...
        assert set(step.input_map.values()) <= available  # ...from the ensemble's inputs or earlier outputs
        assert set(step.output_map) <= {t.name for t in model.output}
        available |= set(step.output_map.values())
    assert {t.name for t in pair.output} <= available
    embedded = [
        s.input_map["images"] for s in pair.ensemble_scheduling.step if s.model_name == MODEL_NAMES["embedding"]
    ]
    assert embedded == ["image_a", "image_b"]


def test_the_repository_is_in_the_manifest_and_its_graphs_are_the_exports(repository):
    folder = ExportFolder.open(repository, ExportPolicy())
    for graph in ("embedding", "compare"):
        served = folder.check(f"triton/{MODEL_NAMES[graph]}/1/model.onnx")
        assert served.read_bytes() == folder.check(f"{graph}.onnx").read_bytes()
    assert folder.check("triton/metadata.json").read_bytes() == folder.check("metadata.json").read_bytes()
    edited = repository / "triton" / MODEL_NAMES["compare"] / "config.pbtxt"
    original = edited.read_text()
    try:
        edited.write_text(original.replace("max_batch_size: 64", "max_batch_size: 65"))
        with pytest.raises(SiameseError, match="sha256 differs"):
            folder.check(f"triton/{MODEL_NAMES['compare']}/config.pbtxt")
    finally:
        edited.write_text(original)


def test_gpu_instances_ask_for_tensorrt_and_bad_batching_is_refused():
    from siamese.backends.triton.repository import Signature, TensorSpec, onnx_model_config

    signature = Signature((TensorSpec("images", "TYPE_UINT8", (16, 16, 3)),), (TensorSpec("f", "TYPE_FP32", (8,)),))
    config = onnx_model_config("m", signature, ServingConfig(kind="gpu", instances=2))
    assert [(g.count, g.kind) for g in config.instance_group] == [(2, pb2.ModelInstanceGroup.KIND_GPU)]
    assert [a.name for a in config.optimization.execution_accelerators.gpu_execution_accelerator] == ["tensorrt"]
    with pytest.raises(SiameseError, match="outside 1..8"):
        ServingConfig(max_batch_size=8, preferred_batch_sizes=(4, 16))
    assert np.array_equal(list(config.input[0].dims), [16, 16, 3])
