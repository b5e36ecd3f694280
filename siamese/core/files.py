"""File helpers shared by checkpoints, downloads, exports and reports; no torch import.

Every result file is written to a temporary sibling, flushed to disk and renamed over its
name, so a kill or a full disk never leaves a partial file where a good one is expected;
a write that fails (full, read-only, missing permission) is one error naming the path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
import weakref
from pathlib import Path

from siamese.core.errors import SiameseError

# result files get the permissions any new file would (0644 under the usual umask 022), not
# mkstemp's private 0600; read once, here, because reading the umask means setting it
_UMASK = os.umask(0o022)
os.umask(_UMASK)

# downloads, extracted archives and engine caches of every tool
DEFAULT_CACHE = Path(os.environ.get("SIAMESE_CACHE", "cache"))


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def sha256_file(path: Path) -> str:
    return file_digest(path, "sha256")


# what a file of each kind the tools read may hold; anything larger is refused unread, so that a
# wrong path (/dev/zero, a disk image) fails at once instead of filling memory
MAX_READ_BYTES = {
    "pair file": 256 << 20,  # a million pairs of long names
    "signing key": 1 << 20,
    "manifest": 16 << 20,
    "signature": 1 << 20,
    "benchmark result": 64 << 20,
    "default marker": 4096,
}


def read_limited(path: Path, kind: str) -> bytes:
    """The bytes of `path`, a file of `kind` (MAX_READ_BYTES), or a one-line error if it is larger
    or unreadable. Reads at most one byte past the limit, whatever the file is."""
    limit = MAX_READ_BYTES[kind]
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise SiameseError(f"{kind} not found: {path}") from None
    except IsADirectoryError:
        raise SiameseError(f"{path}: is a folder, not a {kind}") from None
    except OSError as exc:
        raise SiameseError(f"cannot read the {kind} {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise SiameseError(f"{path}: larger than the {limit >> 20} MiB a {kind} may hold; is it the right file?")
    return data


def copy_hashed(source: Path, target: Path, limit: int, chunk: int = 1 << 20) -> tuple[int, str]:
    """Copy `source` (never through a link) to a new file `target`, returning the size and the
    sha256 of exactly the bytes written: the copy is what was hashed, whatever happens to
    `source` meanwhile. Stops one chunk past `limit` bytes (the size is then wrong anyway)."""
    h, size = hashlib.sha256(), 0
    fd = os.open(source, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with open(fd, "rb") as src, open(target, "xb") as dst:
        while size <= limit and (block := src.read(chunk)):
            h.update(block)
            dst.write(block)
            size += len(block)
    return size, h.hexdigest()


@contextlib.contextmanager
def exclusive_lock(lock_file: Path, what: str):
    """Hold `lock_file` (created, holding our pid) while the block runs, or fail at once with
    one line if another process holds it: two writers of one export or run never interleave.
    The file is removed on leaving; a lock taken on a file that was just removed is not held."""
    import fcntl

    lock_file = Path(lock_file)
    try:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise SiameseError(f"cannot write into {lock_file.parent}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = os.path.exists(lock_file) and os.stat(lock_file).st_ino == os.fstat(fd).st_ino
        except BlockingIOError:
            held = False
        if not held:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise SiameseError(f"{what} is being written by another process (pid {holder}); wait for it to finish")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            lock_file.unlink(missing_ok=True)
    finally:
        os.close(fd)


# a scratch folder is held by an flock on this file while its owner lives
SCRATCH_OWNER = ".owner"


def scratch_folder(prefix: str, owner: object) -> Path:
    """A new private folder under the temp directory, removed when `owner` is collected or the
    process exits. A process killed outright (SIGKILL, a crash inside a runtime, the OOM killer)
    cannot remove its own, so each new folder first removes this user's `prefix` folders whose
    owner has gone: the kernel releases an owner's flock however the owner ends. A folder without
    an owner file is never touched. Where flock is missing (Windows) nothing is swept."""
    try:
        import fcntl
    except ImportError:
        fcntl = None
    root = Path(tempfile.gettempdir())
    if fcntl is not None:
        for folder in root.glob(f"{prefix}*"):
            _remove_if_abandoned(folder, fcntl)
    fd, lock, path = None, None, None
    try:
        if fcntl is None:
            path = Path(tempfile.mkdtemp(prefix=prefix))
        else:  # locked before the folder exists, under a name the sweep never matches
            fd, lock = tempfile.mkstemp(prefix=f".{prefix}owner-")
            fcntl.flock(fd, fcntl.LOCK_EX)
            path = Path(tempfile.mkdtemp(prefix=prefix))
            os.rename(lock, path / SCRATCH_OWNER)
    except OSError as exc:
        if fd is not None:
            os.close(fd)
        if lock is not None:
            Path(lock).unlink(missing_ok=True)
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)
        raise SiameseError(f"cannot make a private folder in {root}: {exc.strerror or exc}") from None
    weakref.finalize(owner, _remove_scratch, path, fd, os.getpid())
    return path


def _remove_scratch(path: Path, fd: int | None, creator: int) -> None:
    if os.getpid() != creator:  # a forked child's exit leaves its parent's folder alone
        return
    shutil.rmtree(path, ignore_errors=True)
    if fd is not None:
        os.close(fd)


def _remove_if_abandoned(folder: Path, fcntl) -> None:
    """Best effort: remove `folder` if it is this user's and its owner file can be locked."""
    try:
        info = folder.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            return
        fd = os.open(folder / SCRATCH_OWNER, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(folder, ignore_errors=True)
    except OSError:  # BlockingIOError: its owner lives; others: a filesystem without flock
        pass
    finally:
        os.close(fd)


def cannot_write(path: Path, exc: OSError) -> SiameseError:
    return SiameseError(f"cannot write {path}: {exc.strerror or exc}")


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then rename over `path`: a crash leaves the old file intact.

    Temporary files that a killed earlier write of `path` left behind are removed first.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise cannot_write(path, exc) from None
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # on disk before it takes the name: no empty file after a power cut
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise cannot_write(path, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(folder: Path) -> Path:
    """Make `folder` if needed and prove a file can be created in it, before any long work."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise SiameseError(f"cannot write into {folder}: {exc.strerror or exc}") from None
    return folder


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, data, indent: int | None = 2) -> None:
    write_text(path, json.dumps(data, indent=indent) + "\n")


def append_line(path: Path, line: str) -> None:
    """One line appended to a log (metrics.jsonl); a failed write names the file."""
    try:
        with open(path, "a") as f:
            f.write(line + "\n")
    except OSError as exc:
        raise cannot_write(path, exc) from None


def write_png(fig, path: Path, dpi: int) -> None:
    """A matplotlib figure saved as PNG, atomically, then closed."""
    import matplotlib.pyplot as plt

    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    finally:
        plt.close(fig)
