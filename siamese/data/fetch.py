"""Download LFW for users who have no copy: the deep-funneled images every figure of this
project and its preprocessing assume, and the official pair files.

The pair files come from the figshare mirror scikit-learn's fetch_lfw_pairs uses (URLs and
sha256 checksums from `sklearn/datasets/_lfw.py`); the deep-funneled archive, which that
mirror does not carry, from the LFW site itself, checked against the MD5 the site publishes.
Each file is downloaded to a temporary name, checked, then renamed, so the cache never holds
a file that failed its checksum.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from siamese.core.errors import SiameseError
from siamese.core.files import check_writable, file_digest


@dataclass(frozen=True)
class RemoteFile:
    filename: str
    url: str
    digest: str  # hex, of `algorithm`: the checksum its publisher states
    algorithm: str = "sha256"

    def matches(self, path: Path) -> bool:
        return file_digest(path, self.algorithm) == self.digest


LFW_FILES = (
    RemoteFile(
        "pairsDevTrain.txt",
        "https://ndownloader.figshare.com/files/5976012",
        "1d454dada7dfeca0e7eab6f65dc4e97a6312d44cf142207be28d688be92aabfa",
    ),
    RemoteFile(
        "pairsDevTest.txt",
        "https://ndownloader.figshare.com/files/5976009",
        "7cb06600ea8b2814ac26e946201cdb304296262aad67d046a16a7ec85d0ff87c",
    ),
    RemoteFile(
        "pairs.txt",
        "https://ndownloader.figshare.com/files/5976006",
        "ea42330c62c92989f9d7c03237ed5d591365e89b3e649747777b70e692dc1592",
    ),
    RemoteFile(
        "lfw-deepfunneled.tgz",
        "http://vis-www.cs.umass.edu/lfw/lfw-deepfunneled.tgz",
        "68331da3eb755a505a502b5aacb3c201",
        "md5",
    ),
)

OFFLINE_HINT = "no network? pass --data PATH (an LFW folder or .tgz) to siamese-train instead"


def _download(remote: RemoteFile, dest: Path, timeout: float) -> None:
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(remote.url, timeout=timeout) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=remote.filename, disable=None) as bar:
                while block := response.read(1 << 16):
                    out.write(block)
                    bar.update(len(block))
        digest = file_digest(tmp, remote.algorithm)
        if digest != remote.digest:
            raise SiameseError(
                f"{remote.filename}: {remote.algorithm} mismatch (got {digest[:12]}..., want {remote.digest[:12]}...)"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _is_unreachable(exc: Exception) -> bool:
    """DNS failures and refused connections will not heal within a retry delay."""
    reason = getattr(exc, "reason", exc)
    return isinstance(reason, socket.gaierror | ConnectionRefusedError)


def fetch_lfw(
    dest: Path,
    retries: int = 3,
    delay: float = 2.0,
    timeout: float = 30.0,
    files: tuple[RemoteFile, ...] = LFW_FILES,
) -> Path:
    """Download every LFW file missing from `dest` (checked against its published checksum); return `dest`."""
    check_writable(dest)
    for remote in files:
        target = dest / remote.filename
        if target.exists() and remote.matches(target):
            continue
        for attempt in range(1, retries + 1):
            try:
                _download(remote, target, timeout)
                break
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                if _is_unreachable(exc) or attempt == retries:
                    reason = getattr(exc, "reason", exc)
                    raise SiameseError(f"cannot download {remote.url} ({reason}); {OFFLINE_HINT}") from None
                time.sleep(delay * attempt)
            except SiameseError:
                if attempt == retries:
                    raise
    return dest
