"""No module imports one above it: the package is a stack of layers, not a single column."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# lowest first; a module may import its own layer and those below it
LAYERS = [
    {"siamese.errors", "siamese.files", "siamese.provenance", "siamese.options", "siamese.distributed"},
    {
        "siamese.model",
        "siamese.preprocess",
        "siamese.pairs",
        "siamese.metrics",
        "siamese.augment",
        "siamese.compare",
        "siamese.quantize",
    },
    {"siamese.data", "siamese.synthetic", "siamese.fetch", "siamese.checkpoint", "siamese.artifacts"},
    {"siamese.deploy", "siamese.parity"},
    {
        f"siamese.runtimes{m}"
        for m in (
            "",
            ".base",
            ".torch_runner",
            ".eager",
            ".compiled",
            ".torchscript",
            ".pt2",
            ".ort",
            ".openvino",
            ".triton_client",
        )
    },
    {"siamese.export", "siamese.verify", "siamese.train", "siamese.evaluate", "siamese.triton", "siamese.serve"},
    {
        "bench.result",
        "bench.machine",
        "bench.timing",
        "bench.report",
        "bench.harness",
        "bench.tolerances",
        "bench.pair_workload",
        "bench.train_step",
        "bench.shared_weights",
        "bench.ort_session",
        "bench.int8_settings",
        "bench.load",
        "bench",
    },
    {"siamese.cli", "bench.cli"},
]
LAYER = {module: i for i, layer in enumerate(LAYERS) for module in layer}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_main_guard(node) -> bool:
    """`if __name__ == "__main__":` a script's entry point may reach any layer, as a CLI does."""
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and isinstance(test, ast.Compare) and getattr(test.left, "id", "") == "__name__"


def project_imports(path: Path) -> set[str]:
    found = set()
    tree = ast.parse(path.read_text())
    tree.body = [node for node in tree.body if not is_main_guard(node)]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {m for m in found if m.split(".")[0] in ("siamese", "bench") and m not in ("siamese", "bench")}


SOURCES = sorted([*ROOT.glob("siamese/**/*.py"), *ROOT.glob("bench/**/*.py")])


def test_every_module_has_a_layer():
    assert {module_name(p) for p in SOURCES} - {"siamese"} <= set(LAYER)


@pytest.mark.parametrize("path", SOURCES, ids=module_name)
def test_no_module_imports_a_layer_above_it(path):
    name = module_name(path)
    if name == "siamese":
        return
    above = {m: LAYER[m] for m in project_imports(path) if LAYER.get(m, -1) > LAYER[name]}
    assert not above, f"{name} (layer {LAYER[name]}) imports {above}"
