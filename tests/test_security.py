"""The trust model: reading or comparing an export never loads code, signatures mean authenticity,
and no name or path from a file or an option reaches outside its folder."""

import csv
import io
import json
import re
import shutil
import tarfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from refusals import ERROR, USAGE, assert_refused, snapshot

from bench.cli import main as bench_cli
from siamese.artifacts.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from siamese.artifacts.folder import MANIFEST, SIGNATURE, ExportFolder, ExportPolicy, read_key, sign_manifest
from siamese.cli import evaluate as evaluate_cli
from siamese.cli import export as export_cli
from siamese.cli import verify as verify_cli
from siamese.core.errors import SiameseError
from siamese.tasks.export import recover_interrupted, write_manifest

CODE_LOADERS = ("torch.export.load", "torch.jit.load", "torch._inductor.aoti_load_package")


@pytest.fixture
def code_loads(monkeypatch):
    """Every call of a loader that can run an artifact's code, recorded (and still performed)."""
    import torch._inductor

    calls = []
    for dotted in CODE_LOADERS:
        owner_name, attr = dotted.rsplit(".", 1)
        owner = {"torch.export": torch.export, "torch.jit": torch.jit, "torch._inductor": torch._inductor}[owner_name]
        original = getattr(owner, attr)

        def spy(*args, _original=original, _name=dotted, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(owner, attr, spy)
    return calls


@pytest.fixture(scope="module")
def copied_export(small_export, tmp_path_factory):
    """A private copy of the session's small export, which these tests may tamper with."""
    _, dest, _ = small_export("contrastive")

    def fresh():
        target = tmp_path_factory.mktemp("copy") / dest.name
        shutil.copytree(dest, target)
        return target

    return fresh


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "export.key"
    path.write_bytes(bytes(range(32)))
    return path


def pair_file(tmp_path, export):
    """Two labelled pairs of random images, written as an assignment-format list."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for person in ("A", "B"):
        (tmp_path / person).mkdir(exist_ok=True)
        for i in (1, 2):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / person / f"{i}.png")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("A/1.png A/2.png 1\nA/1.png B/1.png 0\n")
    return pairs


def test_reading_and_comparing_never_load_code(copied_export, tmp_path, code_loads):
    export = copied_export()
    pairs = pair_file(tmp_path, export)
    runner = CliRunner()
    verify = runner.invoke(
        verify_cli.main, ["--export", str(export), "--pairs", str(pairs), "--images", str(tmp_path), "--no-detect"]
    )  # the test images are noise, no faces
    assert verify.exit_code == 0 and "2 pairs" in verify.output, verify.output
    evaluation = runner.invoke(evaluate_cli.main, [str(export), "--pairs", str(pairs), "--images", str(tmp_path)])
    assert evaluation.exit_code == 0, evaluation.output
    runtimes = "ort-cpu,eager-fp32-cpu,pt2-cpu,torchscript-cpu,aoti-cpu"
    bench = runner.invoke(
        bench_cli, ["--export", str(export), "--no-timing", "--parity-pairs", "0", "--runtimes", runtimes]
    )
    assert "pt2-cpu: unavailable (pt2 artifacts can run code when loaded" in bench.output, bench.output
    assert "torchscript-cpu: unavailable" in bench.output and "ort-cpu: ok" in bench.output
    assert code_loads == []


def test_code_carrying_runtimes_need_trust_export(copied_export, tmp_path, code_loads):
    export = copied_export()
    (tmp_path / "a.png").write_bytes(b"")
    refused = CliRunner().invoke(
        verify_cli.main,
        ["--export", str(export), "--runtime", "pt2-cpu", str(tmp_path / "a.png"), str(tmp_path / "a.png")],
    )
    assert refused.exit_code == ERROR and "pass --trust-export only for an export you made" in refused.output
    assert code_loads == []
    pairs = pair_file(tmp_path, export)
    trusted = CliRunner().invoke(
        verify_cli.main,
        [
            "--export",
            str(export),
            "--runtime",
            "pt2-cpu",
            "--trust-export",
            "--pairs",
            str(pairs),
            "--images",
            str(tmp_path),
        ],
    )
    assert trusted.exit_code == 0, trusted.output
    assert code_loads == ["torch.export.load"] * 2  # embedding and compare


def test_a_loader_refuses_code_even_when_asked_directly(copied_export):
    folder = ExportFolder.open(copied_export())
    with pytest.raises(SiameseError, match="can run code when loaded"):
        folder.check_code("pair.pt2")


def test_signed_exports_verify_and_tampering_is_caught_even_when_rehashed(copied_export, key_file, tmp_path):
    export = copied_export()
    sign_manifest(export, read_key(key_file))
    policy = ExportPolicy.from_options(key_file=key_file)
    assert ExportFolder.open(export, policy).key is not None

    other = tmp_path / "other.key"
    other.write_bytes(b"k" * 32)
    with pytest.raises(SiameseError, match="signature does not match"):
        ExportFolder.open(export, ExportPolicy.from_options(key_file=other))

    # an attacker swaps the threshold and re-hashes the manifest: the sha256 checks pass, the signature does not
    meta = json.loads((export / "metadata.json").read_text())
    meta["threshold"] = 1e9
    (export / "metadata.json").write_text(json.dumps(meta))
    write_manifest(export)
    assert ExportFolder.open(export).metadata.threshold == 1e9  # unsigned reading cannot tell
    with pytest.raises(SiameseError, match="signature does not match: the export was modified"):
        ExportFolder.open(export, policy)

    (export / SIGNATURE).unlink()
    with pytest.raises(SiameseError, match="not signed"):
        ExportFolder.open(export, policy)


def test_export_signs_with_the_key_option_and_readers_require_it(small_export, key_file, tmp_path):
    ckpt, _, _ = small_export("contrastive")
    out = tmp_path / "exports"
    result = CliRunner().invoke(
        export_cli.main,
        [
            "--checkpoint",
            str(ckpt),
            "--untrained",
            "--format",
            "onnx",
            "--out",
            str(out),
            "--name",
            "signed",
            "--sign-key",
            str(key_file),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (out / "signed" / SIGNATURE).is_file() and SIGNATURE not in json.loads(
        (out / "signed" / MANIFEST).read_text()
    )["files"]
    short = tmp_path / "short.key"
    short.write_bytes(b"123")
    assert_refused(
        verify_cli.main,
        ["--export", out / "signed", "--verify-key", short, "a.png", "b.png"],
        "holds 3 bytes; use at least 16 random bytes",
        ERROR,
        [out],
    )
    assert_refused(
        verify_cli.main,
        ["--export", out / "signed", "a.png", "b.png"],
        "image not found",
        ERROR,
        [out],
        env={"SIAMESE_EXPORT_KEY": str(key_file)},  # the key, from the environment, verified first
    )


@pytest.mark.parametrize("name", ["../evil", "a/b", ".", "..", ".hidden", "/tmp/x", "a\\b", "x" * 200, ""])
def test_export_names_are_one_plain_folder_name(small_export, tmp_path, name):
    ckpt, _, _ = small_export("contrastive")
    out = tmp_path / "exports"
    out.mkdir()
    assert_refused(
        export_cli.main,
        ["--checkpoint", ckpt, "--untrained", "--format", "onnx", "--out", out, "--name", name],
        "is not a plain name",
        USAGE,
        [tmp_path],
    )


def test_a_crafted_checkpoint_cannot_steer_the_export_folder(small_export, tmp_path):
    ckpt_path, _, _ = small_export("contrastive")
    ckpt = load_checkpoint(ckpt_path)
    ckpt.data = {"data_set": "../../escaped"}
    crafted = tmp_path / "crafted.pt"
    save_checkpoint(crafted, ckpt)
    out = tmp_path / "deep" / "exports"
    out.mkdir(parents=True)
    assert_refused(
        export_cli.main,
        ["--checkpoint", crafted, "--untrained", "--format", "onnx", "--out", out],
        r"crafted.pt: export name '../../escaped-contrastive-fp32' is not a plain name",
        ERROR,
        [tmp_path],
    )
    assert not (tmp_path / "escaped-contrastive-fp32").exists()


def test_force_replaces_only_an_export_folder(small_export, tmp_path):
    ckpt, _, _ = small_export("contrastive")
    out = tmp_path / "exports"
    (out / "precious").mkdir(parents=True)
    (out / "precious" / "thesis.tex").write_text("years of work")
    assert_refused(
        export_cli.main,
        ["--checkpoint", ckpt, "--untrained", "--format", "onnx", "--out", out, "--name", "precious", "--force"],
        "is not an export folder: --force only replaces an export",
        ERROR,
        [tmp_path],
    )


def test_a_manifest_cannot_name_files_outside_its_folder(copied_export):
    export = copied_export()
    manifest = json.loads((export / MANIFEST).read_text())
    manifest["files"]["../outside.onnx.data"] = {"size": 1, "sha256": "0" * 64}
    (export / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(SiameseError, match=r"file '../outside.onnx.data', part '..' is not a plain name"):
        ExportFolder.open(export)


def test_an_interrupted_export_is_recovered_by_the_next(tmp_path):
    """Killed between moving the old export aside and publishing the new: the old comes back."""
    dest = tmp_path / "lfw-contrastive-fp32"
    old = tmp_path / ".lfw-contrastive-fp32.replaced-abc"
    old.mkdir()
    (old / MANIFEST).write_text("{}")
    partial = tmp_path / ".lfw-contrastive-fp32.partial-def"
    partial.mkdir()
    (partial / "pair.onnx").write_bytes(b"half")
    recover_interrupted(dest)
    assert (dest / MANIFEST).is_file() and not old.exists() and not partial.exists()
    # killed after publishing the new one: the old one is only removed
    old.mkdir()
    recover_interrupted(dest)
    assert not old.exists() and dest.exists()


def test_checkpoints_are_read_without_running_pickled_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    raw = Checkpoint(model={}, model_config=load_model_config()).to_dict()
    raw["config"] = {"x": Payload()}
    path = tmp_path / "evil.pt"
    torch.save(raw, path)
    before = snapshot(tmp_path)
    with pytest.raises(SiameseError, match="refused to load: it names print; checkpoints hold only tensors"):
        load_checkpoint(path)
    assert snapshot(tmp_path) == before


def load_model_config():
    from siamese.core.model import ModelConfig

    return ModelConfig("contrastive", 16)


def _archive(path: Path, member: tarfile.TarInfo, data: bytes = b"x") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        ok = tarfile.TarInfo("lfw/A/A_0001.jpg")
        ok.size = 1
        tar.addfile(ok, io.BytesIO(b"x"))
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def _member(name: str, kind=None, link: str = "", size: int = 1):
    m = tarfile.TarInfo(name)
    m.type = kind or tarfile.REGTYPE
    m.linkname, m.size = link, size if (kind or tarfile.REGTYPE) == tarfile.REGTYPE else 0
    return m


@pytest.mark.parametrize(
    "member, message",
    [
        (lambda: _member("../escape.txt"), "would be written outside the extraction folder"),
        (lambda: _member("/tmp/absolute-escape.txt"), "would be written outside the extraction folder"),
        (lambda: _member("lfw/A/link", tarfile.SYMTYPE, "../../../escape.txt"), "is a link"),
        (lambda: _member("lfw/A/hard", tarfile.LNKTYPE, "lfw/A/A_0001.jpg"), "is a link"),
        (lambda: _member("lfw/A/fifo", tarfile.FIFOTYPE), "special file"),
    ],
)
def test_an_archive_member_cannot_escape_the_extraction_folder(tmp_path, member, message):
    from siamese.data.lfw import extract_archive

    archive = _archive(tmp_path / "lfw-evil.tgz", member())
    cache = tmp_path / "cache"
    with pytest.raises(SiameseError, match=message):
        extract_archive(archive, cache)
    assert not (tmp_path / "escape.txt").exists() and not Path("/tmp/absolute-escape.txt").exists()
    assert list((cache / "extracted").iterdir()) == []  # nothing extracted, no partial folder left


def test_an_oversized_archive_member_is_refused_before_writing(tmp_path, monkeypatch):
    import siamese.data.lfw as lfw

    monkeypatch.setattr(lfw, "MAX_MEMBER_BYTES", 4)
    archive = _archive(tmp_path / "lfw-big.tgz", _member("lfw/A/A_0002.jpg", size=5), b"12345")
    with pytest.raises(SiameseError, match="is 5 bytes, above 4"):
        lfw.extract_archive(archive, tmp_path / "cache")


@pytest.fixture(scope="module")
def other_weights_export(tmp_path_factory):
    """An export like the session's small contrastive one, with other weights, in the formats the
    swap test loads (not AOTInductor's, whose compile alone takes a minute)."""
    from conftest import make_test_checkpoint, writable_formats

    from siamese.tasks.export import export_checkpoint

    tmp = tmp_path_factory.mktemp("other-weights")
    ckpt = make_test_checkpoint(tmp / "checkpoint.pt", "contrastive", 16, seed=1)
    dest, _ = export_checkpoint(
        ckpt,
        tmp / "exports",
        formats=[f for f in writable_formats() if f != "aoti"],
        n_pairs=8,
        log=lambda m: None,
        untrained=True,
    )
    return dest


@pytest.mark.parametrize("runtime", ["ort-cpu", "openvino-ir-cpu", "pt2-cpu", "eager-fp32-cpu", "torchscript-cpu"])
def test_a_file_swapped_after_its_check_never_loads(
    copied_export, other_weights_export, tmp_path, monkeypatch, runtime
):
    """Each file is replaced in the export by another model's the moment its hash has been
    checked: what loads must still be the checked bytes, so the answers do not change."""
    export = copied_export()
    pairs = pair_file(tmp_path, export)
    args = [
        "--export",
        str(export),
        "--runtime",
        runtime,
        "--trust-export",
        "--pairs",
        str(pairs),
        "--images",
        str(tmp_path),
        "--no-detect",  # noise images hold no face: every pair would be undecided, and equal either way
    ]
    clean = CliRunner().invoke(verify_cli.main, [*args, "--output", str(tmp_path / "clean.csv")])
    assert clean.exit_code == 0 and "2 pairs" in clean.output, clean.output
    with open(tmp_path / "clean.csv") as f:
        scores = [row["score"] for row in csv.DictReader(f)]
    assert len(scores) == 2 and all(scores), f"the clean run decided no pair: {scores}"
    original_check, swapped = ExportFolder.check, []

    def check_then_swap(self, name):
        checked = original_check(self, name)
        if name != "metadata.json" and (other_weights_export / name).is_file():
            shutil.copyfile(other_weights_export / name, self.path / name)
            swapped.append(name)
        return checked

    monkeypatch.setattr(ExportFolder, "check", check_then_swap)
    raced = CliRunner().invoke(verify_cli.main, [*args, "--output", str(tmp_path / "raced.csv")])
    assert swapped, "nothing was checked"
    assert raced.exit_code == 0, raced.output
    assert (tmp_path / "raced.csv").read_text() == (tmp_path / "clean.csv").read_text()


def test_an_export_being_written_is_neither_replaced_nor_cleaned_up_by_a_second(small_export, tmp_path):
    """A second export of the same name while the first writes: one line, and the first's
    published folder and partial folder are untouched (with --force too)."""
    from siamese.core.files import exclusive_lock

    ckpt, dest, _ = small_export("contrastive")
    out = tmp_path / "exports"
    shutil.copytree(dest, out / dest.name)
    partial = out / f".{dest.name}.partial-abc123"
    partial.mkdir()
    (partial / "embedding.onnx").write_bytes(b"being written")
    with exclusive_lock(out / f".{dest.name}.lock", "the first export"):
        for force in ([], ["--force"]):
            args = ["--checkpoint", ckpt, "--untrained", "--out", out, "--name", dest.name, "--format", "onnx", *force]
            assert_refused(
                export_cli.main, args, rf"export {out / dest.name} is being written by another process", ERROR, [out]
            )
    assert (partial / "embedding.onnx").read_bytes() == b"being written"


def test_two_exports_of_one_name_at_once_never_both_succeed(small_export, tmp_path):
    import subprocess
    import sys

    ckpt, _, _ = small_export("contrastive")
    out = tmp_path / "exports"
    command = [
        sys.executable,
        "-m",
        "siamese.cli.export",
        "--checkpoint",
        str(ckpt),
        "--untrained",
        "--out",
        str(out),
        "--name",
        "race",
        "--format",
        "onnx",
    ]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(run.wait(timeout=600), run.stderr.read()) for run in runs]
    assert sorted(code for code, _ in results) == [0, 1], results
    loser = next(err for code, err in results if code == 1)
    assert "Traceback" not in loser
    assert "is being written by another process" in loser or "exists; pass --force" in loser
    ExportFolder.open(out / "race").check("embedding.onnx")  # the winner's export is whole
    assert sorted(p.name for p in out.iterdir()) == ["race"]


def _rewrite_member(path: Path, member_suffix: str, change) -> None:
    """The torch.save archive at `path` with one member's bytes changed (CRCs written anew)."""
    import zipfile

    with zipfile.ZipFile(path) as old:
        members = [(info, old.read(info)) for info in old.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as new:
        for info, data in members:
            new.writestr(info, change(data) if info.filename.endswith(member_suffix) else data)


def test_a_checkpoint_with_zeroed_weight_bytes_is_refused_by_its_crc(tmp_path):
    """torch.load reads damaged tensor bytes without a word; the archive's CRC-32s catch them."""
    import zipfile

    from conftest import make_test_checkpoint

    path = make_test_checkpoint(tmp_path / "checkpoint.pt", "contrastive", 16)
    with zipfile.ZipFile(path) as archive:
        largest = max(archive.infolist(), key=lambda i: i.file_size)
        start = largest.header_offset + 30 + len(largest.filename.encode()) + len(largest.extra)
    with open(path, "r+b") as f:
        f.seek(start + largest.file_size // 2)
        f.write(bytes(4096))  # 4 KiB of zeros in the FC layer's weights
    with pytest.raises(SiameseError, match=rf"{largest.filename} fails its CRC-32 check"):
        load_checkpoint(path)
    result = CliRunner().invoke(
        export_cli.main, ["--checkpoint", str(path), "--untrained", "--out", str(tmp_path / "exports")]
    )
    assert result.exit_code == ERROR and "fails its CRC-32 check" in result.output and "Traceback" not in result.output


def test_a_checkpoint_whose_storage_declares_a_negative_size_is_one_line(tmp_path):
    from conftest import make_test_checkpoint

    path = make_test_checkpoint(tmp_path / "checkpoint.pt", "contrastive", 16)
    # the first storage record of data.pkl is ('storage', FloatStorage, '0', 'cpu', numel): numel -> -7
    record = re.compile(rb"(X\x03\x00\x00\x00cpuq.)(K.|M..|J....)t", re.DOTALL)
    _rewrite_member(
        path, "data.pkl", lambda data: record.sub(lambda m: m.group(1) + b"J\xf9\xff\xff\xfft", data, count=1)
    )
    with pytest.raises(SiameseError, match=r"not a readable checkpoint \(\w+Error"):
        load_checkpoint(path)
