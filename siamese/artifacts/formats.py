"""The export formats: one registry that export orchestration, export verification, the export
folder and the runtimes all read. Adding a format is one entry here (and its writer and runner).

Writers and runners are named as "module:attribute" strings and imported only when used, so
reading an export needs none of the exporters' packages (torch, onnx, openvino).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field

from siamese.core.errors import SiameseError
from siamese.core.provenance import cxx_compiler
from siamese.core.spec import GRAPH_INPUTS

DTYPES = ("fp32", "fp16", "bf16", "int8")  # what an export can be written in
GRAPHS = tuple(GRAPH_INPUTS)  # every format writes all three graphs of the spec, in this order


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str  # the artifact of graph g is g + suffix
    writer: str | Callable  # "module:function" or the function: (module, graph, path, meta, calibration) -> notes
    verified_by: str  # the runtime (siamese.backends.RUNTIMES) that reads it back when an export is checked
    # dtype -> why this format cannot hold it; every other dtype of DTYPES it can
    unsupported: dict[str, str] = field(default_factory=dict)
    in_all: tuple[str, ...] = ("fp32", "fp16", "bf16")  # the dtypes for which `--format all` writes it
    modules: tuple[str, ...] = ()  # Python packages the writer needs
    int8_modules: tuple[str, ...] = ()  # and what it needs more for INT8
    compiler: bool = False  # the writer builds native code (needs a C++ compiler)

    def artifact(self, graph: str) -> str:
        return graph + self.suffix

    def supports(self, dtype: str) -> bool:
        return dtype in DTYPES and dtype not in self.unsupported

    def missing(self, dtype: str = "fp32") -> str | None:
        """Why this machine cannot write the format in `dtype`, or None."""
        for module in self.modules + (self.int8_modules if dtype == "int8" else ()):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed"
        if self.compiler and not cxx_compiler():
            return "no C++ compiler (c++ or g++)"
        return None

    def write(self, *args, **kwargs) -> dict:
        writer = self.writer
        if isinstance(writer, str):
            module, name = writer.split(":")
            writer = getattr(importlib.import_module(module), name)
        return writer(*args, **kwargs)


INT8_ONLY_QUANTIZERS = "INT8 is an ONNX Runtime or OpenVINO (NNCF) quantized artifact: export it as onnx or openvino"

FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            "onnx",
            ".onnx",
            "siamese.backends.onnx.writer:write_onnx",
            "ort-cpu",
            unsupported={"bf16": "ONNX opset 18 has no bfloat16 convolution: export bf16 as torchscript/pt2, or fp16"},
            in_all=("fp32", "fp16", "int8"),
            modules=("onnx",),
            int8_modules=("onnxruntime",),
        ),
        Format(
            "torchscript",
            ".torchscript.pt",
            "siamese.backends.torch.writers:write_torchscript",
            "torchscript-cpu",
            unsupported={"int8": INT8_ONLY_QUANTIZERS},
        ),
        Format(
            "pt2",
            ".pt2",
            "siamese.backends.torch.writers:write_pt2",
            "pt2-cpu",
            unsupported={"int8": INT8_ONLY_QUANTIZERS},
        ),
        Format(
            "aoti",
            ".aoti.pt2",
            "siamese.backends.torch.writers:write_aoti",
            "aoti-cpu",
            unsupported={"int8": INT8_ONLY_QUANTIZERS},
            compiler=True,
        ),
        # an OpenVINO IR, `<graph>.ov.xml` with its weights in `<graph>.ov.bin`; left out of `all`
        # in float, where it is a second copy of the weights the ONNX graphs already hold
        Format(
            "openvino",
            ".ov.xml",
            "siamese.backends.openvino.writer:write_openvino",
            "openvino-ir-cpu",
            unsupported={
                d: "OpenVINO IR exports are fp32 or int8 (OpenVINO picks its own CPU precision)"
                for d in ("fp16", "bf16")
            },
            in_all=("int8",),
            modules=("openvino", "onnx"),
            int8_modules=("nncf",),
        ),
    )
}


def get_format(name: str) -> Format:
    if name not in FORMATS:
        raise SiameseError(f"unknown format {name!r}; choose from {', '.join(FORMATS)}")
    return FORMATS[name]


def artifact_name(graph: str, fmt: str) -> str:
    return get_format(fmt).artifact(graph)


def check_dtype(formats, dtype: str) -> None:
    """Refuse a format that cannot hold `dtype`, with its reason."""
    for name in formats:
        reason = get_format(name).unsupported.get(dtype)
        if reason:
            raise SiameseError(f"{name} cannot be written in {dtype}: {reason}")


def formats_for_all(dtype: str) -> tuple[list[str], list[str]]:
    """What `--format all` writes in `dtype` on this machine, and a line for each format it leaves out."""
    chosen, left_out = [], []
    for f in FORMATS.values():
        if dtype not in f.in_all:
            continue
        reason = f.missing(dtype)
        if reason:
            left_out.append(f"{f.name}: {reason}")
        else:
            chosen.append(f.name)
    return chosen, left_out
