"""The package is a stack of layers, one per subpackage: no module imports one above it, and
the import graph (lazy imports inside functions included) has no circle."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# lowest first; a module may import its own layer and those below it. A module belongs to the
# longest prefix listed here that names it or a package above it.
LAYERS = [
    "siamese.core",
    "siamese.data",
    "siamese.detect",  # face detection and framing
    "siamese.artifacts",
    "siamese.parity",
    "siamese.backends",  # the runner interface and the runtime registry
    "siamese.backends.torch",
    "siamese.backends.onnx",
    "siamese.backends.openvino",
    "siamese.backends.triton",
    "siamese.tasks",
    "siamese.training",
    "siamese.cli",
    "bench",
    "bench.studies",
    "bench.cli",
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int | None:
    owners = [p for p in LAYERS if module == p or module.startswith(p + ".")]
    return LAYERS.index(max(owners, key=len)) if owners else None


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
MODULES = {module_name(p): p for p in SOURCES}


def test_every_module_has_a_layer():
    assert [m for m in MODULES if m != "siamese" and layer_of(m) is None] == []


@pytest.mark.parametrize("path", SOURCES, ids=module_name)
def test_no_module_imports_a_layer_above_it(path):
    name = module_name(path)
    if name == "siamese":
        return
    above = {m: LAYERS[layer_of(m)] for m in project_imports(path) if (layer_of(m) or 0) > layer_of(name)}
    assert not above, f"{name} ({LAYERS[layer_of(name)]}) imports {above}"


def test_the_import_graph_has_no_circle():
    graph = {name: {m for m in project_imports(path) if m in MODULES} for name, path in MODULES.items()}
    done, path = set(), []

    def visit(module):
        if module in path:
            raise AssertionError("import circle: " + " -> ".join([*path[path.index(module) :], module]))
        if module in done:
            return
        path.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


@pytest.mark.parametrize("command", ["verify", "evaluate", "serve", "export", "data"])
def test_reading_commands_load_no_training_code(command):
    """What siamese-verify, -eval, -serve, -export and -data load at start: neither the training
    package nor torch.distributed (nor torch itself: an ONNX Runtime client needs none)."""
    code = (
        f"import sys, siamese.cli.{command}; "
        "print(sorted({m.split('.')[0] + ('.' + m.split('.')[1] if m.startswith('siamese.') else '') "
        "for m in sys.modules if m.startswith(('siamese.training', 'torch'))}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_verifying_with_onnx_runtime_never_imports_torch(contrastive_export, tmp_path, lfw_dir, cache_dir):
    """A whole verification, decoding, face detection and ONNX Runtime included, runs without torch."""
    from siamese.data.lfw import locate_lfw

    root = locate_lfw(lfw_dir, cache_dir).image_root
    for name, key in (("a.jpg", "Aaron_Eckhart/Aaron_Eckhart_0001.jpg"), ("b.jpg", "Abba_Eban/Abba_Eban_0001.jpg")):
        (tmp_path / name).write_bytes((root / key).read_bytes())
    code = (
        "import sys; from siamese.tasks.verify import Verifier; "
        f"v = Verifier({str(contrastive_export)!r}, 'ort-cpu'); "
        f"r = v.verify_files({str(tmp_path / 'a.jpg')!r}, {str(tmp_path / 'b.jpg')!r}); "
        "print(type(r.score).__name__, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["float", "False"]
