"""OpenVINO on the CPU, reading the export's ONNX graphs (fp32, or the INT8 QDQ graphs of an
`--dtype int8` export, which OpenVINO turns into its own low-precision kernels).

OpenVINO's CPU plugin picks bf16 by itself on CPUs with AVX-512 bf16 or AMX; the inference
precision is set explicitly here so an fp32 runtime really computes in fp32.
"""

from __future__ import annotations

import numpy as np

from siamese.artifacts.folder import ExportFolder
from siamese.artifacts.formats import artifact_name
from siamese.backends.base import Abilities, Runner
from siamese.core.errors import SiameseError, first_line
from siamese.core.provenance import missing_module

IR_WEIGHTS = "openvino.bin"  # the one weights file of every OpenVINO IR of an export

PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}


class OpenVino(Runner):
    """`artifact` "onnx" reads the export's ONNX graphs; "openvino" its OpenVINO IR (written by
    `siamese-export --format openvino`: fp32, or NNCF INT8 in an `--dtype int8` export)."""

    def __init__(self, precision: str = "fp32", artifact: str = "onnx", threads: int | None = None):
        super().__init__(threads)
        self.precision = precision
        self.models: dict = {}
        self.abilities = Abilities(
            device="cpu",
            precision=precision,
            artifact=artifact,
            timed_with="wall clock",
            takes_threads=True,
            loads_code=False,
            note=f"CPU plugin, INFERENCE_PRECISION_HINT={PRECISION_HINTS[precision]}, PERFORMANCE_HINT=LATENCY",
        )

    def missing(self) -> str | None:
        reason = missing_module("openvino", "pip install 'siamese-verify[openvino]'")
        if reason or self.precision == "fp32":
            return reason
        import openvino as ov

        # without native support the plugin quietly computes in fp32 and the figure would lie
        capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        return None if "BF16" in capabilities else f"this CPU has no bf16 kernels (OpenVINO: {', '.join(capabilities)})"

    def load(self, export: ExportFolder, graphs, batches=()) -> None:
        import openvino as ov

        self.export = export
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": PRECISION_HINTS[self.precision], "PERFORMANCE_HINT": "LATENCY"}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        for graph in graphs:
            name = artifact_name(graph, self.abilities.artifact)
            path = export.check_onnx(name) if self.abilities.artifact == "onnx" else export.check(name)
            # the IR's weights: the export's shared file (older exports: one .bin per graph)
            weights = None
            if self.abilities.artifact != "onnx":
                shared = IR_WEIGHTS if export.has(IR_WEIGHTS) else path.name.removesuffix(".xml") + ".bin"
                weights = str(export.check(shared))
            try:
                model = core.read_model(str(path), weights) if weights else core.read_model(str(path))
                self.models[graph] = core.compile_model(model, "CPU", config)
            except RuntimeError as exc:
                raise SiameseError(f"{export.path / name}: OpenVINO cannot compile it ({first_line(exc)})") from None

    def run(self, graph, inputs):
        model = self.models[graph]
        result = model(list(inputs))
        return [np.asarray(result[model.output(name)]) for name in self.export.metadata.outputs(graph)]

    def close(self) -> None:
        self.models = {}
