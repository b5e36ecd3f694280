"""Each runner's own promises, tested on the CPU where the GPU paths allow it."""

import numpy as np
import pytest
import torch

from siamese.artifacts.folder import ExportFolder, ExportPolicy
from siamese.artifacts.formats import FORMATS
from siamese.backends import RUNTIMES, create
from siamese.backends.onnx.runtime import misplaced, node_placement, provider_options, trt_profiles
from siamese.backends.torch.runner import cuda_math
from siamese.core.errors import SiameseError


@pytest.fixture(scope="module")
def export(small_export):
    _, dest, _ = small_export("contrastive")
    return ExportFolder.open(dest, ExportPolicy(trust_code=True))  # the test's own export


def images(n, size=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_every_runtime_states_its_abilities():
    for name in RUNTIMES:
        abilities = create(name).abilities
        assert abilities.device in ("cpu", "cuda") and abilities.precision in ("fp32", "tf32", "fp16", "bf16")
        assert abilities.artifact in ("weights", *FORMATS)
        assert abilities.timed_with in ("wall clock", "CUDA events")
        assert name.endswith(abilities.device) or "tensorrt" in name


def test_verify_and_bench_take_the_same_runtime_names():
    from bench.cli import main as bench_cli
    from siamese.cli.verify import main as verify

    choices = next(p for p in verify.params if p.name == "runtime").type.choices
    assert list(choices) == list(RUNTIMES)
    assert next(p for p in bench_cli.params if p.name == "runtimes").type.convert("ort-cpu,pt2-cpu", None, None)


def first_conv_input(runner, export):
    seen = []
    conv = runner.modules["embedding"].embedding[0]
    handle = conv.register_forward_pre_hook(lambda module, args: seen.append((args[0], module.weight)))
    runner.embed(images(2))
    handle.remove()
    return seen[0]


def test_eager_baseline_is_contiguous_nchw_and_channels_last_is_channels_last(export):
    """The NHWC input permuted is channels_last in memory: the baseline must not inherit that."""
    plain = create("eager-fp32-cpu")
    plain.load(export, ("embedding",))
    x, w = first_conv_input(plain, export)
    assert x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last) and w.is_contiguous()
    cl = create("eager-fp32-channels-last-cpu")
    cl.load(export, ("embedding",))
    x, w = first_conv_input(cl, export)
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    assert w.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.gpu
def test_pt2_moves_to_another_device_with_no_cpu_pinned(export):
    """A saved program pins device=cpu; moved (here to meta, on a GPU to cuda) no node keeps it."""
    from siamese.backends.torch.pt2 import load_program

    def pinned(program):
        return {str(v) for n in program.graph.nodes for v in n.kwargs.values() if isinstance(v, torch.device)}

    path = export.check("embedding.pt2")
    assert pinned(load_program(path, "cpu")) == {"cpu"}
    moved = load_program(path, "meta")
    assert pinned(moved) == set() and {t.device.type for t in moved.state_dict.values()} == {"meta"}
    out = moved.module()(torch.zeros(3, 16, 16, 3, dtype=torch.uint8, device="meta"))
    assert out.device.type == "meta" and out.shape == (3, 1024)


@pytest.mark.gpu
def test_fp32_runners_turn_tf32_off_and_tf32_runners_on():
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    with cuda_math(allow_tf32=False):
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    with cuda_math(allow_tf32=True):
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before
    assert create("eager-fp32-cuda").precision == "fp32" and create("eager-tf32-cuda").precision == "tf32"


def test_compile_raises_instead_of_falling_back_to_eager(export):
    if create("compile-cpu").unavailable(export):
        pytest.skip(create("compile-cpu").unavailable(export))
    from siamese.backends.torch.compiled import Compiled

    torch._dynamo.reset()  # the limit counts per code object, across every earlier compile in this process
    strict = Compiled(max_recompiles=1)
    strict.load(export, ("embedding",))
    strict.embed(images(2))
    with pytest.raises(Exception, match="(?i)recompil"):
        strict.embed(images(3))  # a second batch size exceeds the limit: an error, never silent eager
    compiled, eager = create("compile-cpu"), create("eager-fp32-cpu")
    compiled.load(export, ("embedding",))
    eager.load(export, ("embedding",))
    for n in (1, 2, 3, 5, 8, 13):  # one static compile per batch size, all within the limit
        np.testing.assert_allclose(compiled.embed(images(n)), eager.embed(images(n)), rtol=1e-4, atol=1e-4)


def test_cuda_provider_options_make_the_precision_true(tmp_path):
    assert provider_options("cuda", "fp32", tmp_path, {}) == [("CUDAExecutionProvider", {"use_tf32": "0"})]
    assert provider_options("cuda", "tf32", tmp_path, {})[0][1]["use_tf32"] == "1"
    profiles = trt_profiles(["image_a", "image_b"], (16, 16, 3), [64, 1, 8])
    trt, cuda = provider_options("tensorrt", "fp16", tmp_path / "abc", profiles)
    assert trt[0] == "TensorrtExecutionProvider" and trt[1]["trt_fp16_enable"] == "True"
    assert trt[1]["trt_engine_cache_path"] == str(tmp_path / "abc") and trt[1]["trt_timing_cache_enable"] == "True"
    assert cuda == ("CUDAExecutionProvider", {"use_tf32": "0"})
    assert provider_options("tensorrt", "fp32", tmp_path, profiles)[0][1]["trt_fp16_enable"] == "False"


def test_trt_profiles_cover_every_batch_with_one_profile_per_size():
    p = trt_profiles(["x"], (16, 16, 3), [8, 1, 64, 8])
    assert p["trt_profile_min_shapes"] == "x:1x16x16x3,x:2x16x16x3,x:9x16x16x3"
    assert p["trt_profile_opt_shapes"] == "x:1x16x16x3,x:8x16x16x3,x:64x16x16x3"
    assert p["trt_profile_max_shapes"] == p["trt_profile_opt_shapes"]


def test_trt_engine_cache_is_keyed_by_the_artifact_hash(export, tmp_path, monkeypatch):
    """ONNX Runtime's own cache key ignores weights: a retrained export must not reuse an old engine."""
    import siamese.backends.onnx.runtime as ort_module

    seen = []
    monkeypatch.setattr(ort_module, "make_session", lambda path, providers, threads, **kw: seen.append(providers))
    monkeypatch.setattr(ort_module, "check_signature", lambda *args: None)  # no session was made
    runner = ort_module.OnnxRuntime(provider="tensorrt", cache=tmp_path, check_placement=False)
    runner.load(export, ("pair",), [1, 8])
    options = seen[0][0][1]
    assert options["trt_engine_cache_path"] == str(tmp_path / export.sha256("pair.onnx")[:16])
    assert options["trt_profile_opt_shapes"].startswith("image_a:1x16x16x3,image_b:1x16x16x3,image_a:8x")


def test_node_placement_is_checked_per_node(export, tmp_path):
    from siamese.backends.onnx.runtime import OnnxRuntime, make_session

    runner = OnnxRuntime(provider="cpu", check_placement=True)
    runner.load(export, ("embedding",))  # profiles one run and checks every heavy node's provider
    session = make_session(export.check("embedding.onnx"), ["CPUExecutionProvider"], profile_dir=tmp_path)
    session.run(None, {"images": images(1)})
    placement = node_placement(session.end_profiling())
    ops = {op for _, op, _ in placement}
    assert {"Conv", "Gemm"} & ops or {"FusedConv", "FusedGemm", "MatMul"} & ops
    assert misplaced(placement, "CPUExecutionProvider") == []
    wrong = misplaced(placement, "CUDAExecutionProvider")
    assert wrong and all("on CPUExecutionProvider" in w for w in wrong)


def test_a_provider_missing_here_is_unavailable_with_the_reason(export):
    import onnxruntime

    runner = create("ort-tensorrt")
    if "TensorrtExecutionProvider" in onnxruntime.get_available_providers():
        assert runner.unavailable(export) is None
    else:
        assert "TensorrtExecutionProvider" in runner.unavailable(export)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_format_has_exactly_one_cpu_runner(fmt):
    runner = create(FORMATS[fmt].verified_by)
    assert runner.abilities.artifact == fmt and runner.abilities.device == "cpu"


def test_inputs_are_checked_before_any_runtime(export):
    runner = create("ort-cpu")
    runner.load(export, ("pair", "compare"))
    with pytest.raises(SiameseError, match="different batch sizes"):
        runner.pair(images(2), images(3))
    with pytest.raises(SiameseError, match=r"expected float32 features of shape \(N, 1024\)"):
        runner.compare(np.zeros((2, 8), np.float32), np.zeros((2, 8), np.float32))
    with pytest.raises(SiameseError, match="load an export first"):
        create("ort-cpu").embed(images(1))
