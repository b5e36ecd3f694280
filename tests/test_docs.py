"""The docs cannot drift: every shell and Python block of README.md and docs/ runs, in order, one
folder per page that starts from what the README's quick start left, except blocks marked
`<!-- doc-test: skip: REASON -->` (hours of training, a GPU), which are listed with their reason.

Sizes shrink through SHRINK so that CI can afford the quick start: the same commands, fewer
epochs and shorter timings."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_ports

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SKIP = re.compile(r"<!-- doc-test: skip: (.+?) -->")
# the quick start as written, at sizes CI can afford (same commands and options otherwise)
SHRINK = {"--epochs 3": "--epochs 1 --pairs-per-epoch 256"}  # timings stay as written: --compare needs them


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    code: str
    skip: str | None  # why it does not run here

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    found, lines = [], page.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = re.fullmatch(r"```(bash|sh|python)\s*", lines[i])
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            marker = SKIP.search(lines[i - 1]) if i else None
            code = "\n".join(lines[i + 1 : end]) + "\n"
            found.append(Block(page, i + 1, fence.group(1), code, marker.group(1) if marker else None))
            i = end
        i += 1
    return found


def shrink(code: str) -> str:
    for written, affordable in SHRINK.items():
        code = code.replace(written, affordable)
    return code


def test_every_page_is_linked_from_the_readme_and_the_readme_stays_short():
    readme = (ROOT / "README.md").read_text()
    for page in PAGES[1:]:
        assert str(page.relative_to(ROOT)) in readme, f"{page} is not linked from the README"
    assert len(readme.splitlines()) <= 250


def test_the_skips_are_listed_with_their_reasons(capsys):
    skipped = [b for page in PAGES for b in blocks(page) if b.skip]
    with capsys.disabled():
        print(f"\ndoc blocks not run here ({len(skipped)}):")
        for b in skipped:
            print(f"  {b.where}: {b.skip}")
    assert all(len(b.skip) > 10 for b in skipped)  # a reason, not a bare marker


def environment(folder: Path) -> dict:
    """A new user's shell in `folder`: a checkout's .venv/bin first on PATH, as the quick start's
    `export PATH=$PWD/.venv/bin:$PATH` puts it; free ports for the server."""
    http, grpc, metrics = free_ports(3)
    env = {**os.environ, "HTTP_PORT": str(http), "GRPC_PORT": str(grpc), "METRICS_PORT": str(metrics)}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if not (folder / ".venv").exists():
        (folder / ".venv").symlink_to(Path(sys.executable).parents[1])
    return env


def run_block(block: Block, folder: Path) -> None:
    if block.language == "python":
        command = [sys.executable, "-c", block.code]
    else:
        command = ["bash", "-euo", "pipefail", "-c", shrink(block.code)]
    env = environment(folder)
    run = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert run.returncode == 0, f"{block.where} failed:\n{block.code}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert "Traceback" not in run.stderr, f"{block.where}:\n{run.stderr[-3000:]}"


def quick_start_block() -> Block:
    readme = blocks(PAGES[0])
    heading = next(i for i, line in enumerate(PAGES[0].read_text().splitlines()) if line.startswith("## Quick start"))
    return next(b for b in readme if b.line > heading and not b.skip)


@pytest.fixture(scope="session")
def quick_start(tmp_path_factory) -> Path:
    """The README's quick start, run once: every other page starts from what it leaves (its
    trained run, export and synthetic faces), as a reader who did it first would."""
    folder = tmp_path_factory.mktemp("quick-start")
    started = time.monotonic()
    run_block(quick_start_block(), folder)
    print(f"the quick start ran in {time.monotonic() - started:.0f} s")
    return folder


def runnable(page: Path) -> list[Block]:
    return [b for b in blocks(page) if not b.skip and b != quick_start_block()]


@pytest.mark.parametrize("page", [p for p in PAGES if runnable(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_the_blocks_of_a_page_run_as_written(page, quick_start, tmp_path):
    """Each page's runnable blocks, in order, in a copy of the quick start's folder."""
    folder = tmp_path / "work"
    shutil.copytree(quick_start, folder, symlinks=True)
    started = time.monotonic()
    for block in runnable(page):
        run_block(block, folder)
    print(f"{page.name}: its blocks ran in {time.monotonic() - started:.0f} s")
