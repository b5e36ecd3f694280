"""The PyTorch writers: TorchScript (traced), torch.export programs and AOTInductor packages.

Each takes (module, graph, path, metadata, calibration) and returns notes for the metadata;
`calibration` is for INT8 writers, which these are not (siamese.artifacts.formats).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from siamese.artifacts.folder import METADATA
from siamese.artifacts.graphs import dynamic_batch, example_inputs


def write_torchscript(module, graph: str, path: Path, meta: dict, calibration=None) -> dict:
    size = meta["image_size"]
    traced = torch.jit.trace(module, example_inputs(graph, size), check_inputs=[example_inputs(graph, size, 3)])
    torch.jit.save(traced, str(path), _extra_files={METADATA: json.dumps(meta)})
    return {"method": "torch.jit.trace (checked at another batch size)"}


def write_pt2(module, graph: str, path: Path, meta: dict, calibration=None) -> dict:
    program = torch.export.export(
        module, example_inputs(graph, meta["image_size"]), dynamic_shapes=dynamic_batch(graph)
    )
    torch.export.save(program, str(path), extra_files={METADATA: json.dumps(meta)})
    return {"method": "torch.export.export"}


def write_aoti(module, graph: str, path: Path, meta: dict, calibration=None) -> dict:
    import torch._inductor

    program = torch.export.export(
        module, example_inputs(graph, meta["image_size"]), dynamic_shapes=dynamic_batch(graph)
    )
    torch._inductor.aoti_compile_and_package(program, package_path=str(path))
    return {"method": "torch._inductor.aoti_compile_and_package"}
