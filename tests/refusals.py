"""Shared by the bad-input tests of every entry point: refuse, say why in one line, change nothing."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from click.testing import CliRunner

USAGE = 2  # click: a bad option value or a bad combination of options
ERROR = 1  # siamese: a SiameseError, shown as one line


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file under `roots` (hidden ones included) -> sha256: what 'nothing changed' compares."""
    files = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.is_file() and not path.is_symlink():
                files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def assert_refused(command, args: list[str], message: str, code: int, watched: list[Path], env=None) -> str:
    """Run a click command; it must exit with `code` and a one-line `message` (a regex), no
    traceback, and leave every file under `watched` as it was (nothing new, nothing changed)."""
    before = snapshot(*watched)
    result = CliRunner().invoke(command, [str(a) for a in args], env=env)
    output = result.output
    assert result.exit_code == code, f"exit {result.exit_code}, expected {code}: {output}"
    assert isinstance(result.exception, SystemExit), f"raised {result.exception!r}: {output}"
    assert "Traceback" not in output
    assert re.search(message, output), f"{message!r} not in: {output}"
    assert snapshot(*watched) == before, "files changed although the command was refused"
    return output
