"""Where the images come from, decoded once per run into an in-memory uint8 bank.

A data set is an `ImageBank` (every image decoded once, (N, S, S, 3) uint8) plus the train
and test pair lists as bank indices, plus the training identities' images for drawing extra
pairs. LFW is read from an extracted folder or from the `.tgz` (extracted once into a cache).
Training only ever sees images of identities that appear in the training pairs and never in
the test pairs (LFW's image-unrestricted protocol).
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from tqdm import tqdm

from siamese.core.errors import SiameseError
from siamese.core.files import DEFAULT_CACHE
from siamese.core.pairs import Pair, identities, identity_of, read_pairs
from siamese.core.preprocess import DECODE_WORKERS, decode_image, image_file

PAIR_FILE_CHOICES = (("pairsDevTrain.txt", "pairsDevTest.txt"), ("train.txt", "test.txt"))
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class LFWLocation:
    image_root: Path
    train_pairs: Path | None
    test_pairs: Path | None


def default_lfw_candidates(cache_dir: Path = DEFAULT_CACHE) -> list[Path]:
    """Where LFW is looked for when no --data is given, in this order: $SIAMESE_LFW, then what
    `siamese-data fetch` downloaded into the cache. Nothing outside them is ever guessed."""
    candidates = [Path(p) for p in [os.environ.get("SIAMESE_LFW")] if p]
    return candidates + [cache_dir / "lfw"]


def find_lfw(cache_dir: Path = DEFAULT_CACHE) -> Path | None:
    """The first LFW copy present in the usual places, or None."""
    for candidate in default_lfw_candidates(cache_dir):
        if candidate.exists() and (any(_archives(candidate)) or any(_image_roots(candidate))):
            return candidate
    return None


def describe_lfw(cache_dir: Path = DEFAULT_CACHE) -> list[str]:
    """What `siamese-data info` says: where LFW is looked for, what was found there, and which
    images and pair files the tools would use (nothing is extracted to find out)."""
    env = os.environ.get("SIAMESE_LFW")
    lines = [f"LFW is looked for in: $SIAMESE_LFW ({env or 'unset'}), then {cache_dir / 'lfw'}"]
    found = find_lfw(cache_dir)
    if found is None:
        return [*lines, "no LFW found: run siamese-data fetch, set $SIAMESE_LFW, or pass --data PATH to siamese-train"]
    lines.append(f"LFW found: {found}")
    roots, archives = _image_roots(found), _archives(found)
    if roots:
        people = [d for d in roots[0].iterdir() if d.is_dir()]
        images = sum(1 for d in people for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        lines.append(f"  images: {roots[0]} ({images} images of {len(people)} people)")
    elif archives:
        lines.append(
            f"  images: {archives[0]} ({archives[0].stat().st_size / 2**20:.0f} MiB; extracted once, into {cache_dir})"
        )
    train, test = _pair_files(found)
    lines.append(f"  train pairs: {train or 'none'}" + (f" ({_count_lines(train)} lines)" if train else ""))
    lines.append(f"  test pairs: {test or 'none'}" + (f" ({_count_lines(test)} lines)" if test else ""))
    return lines


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def default_pairs(split: str, cache_dir: Path = DEFAULT_CACHE) -> Path | None:
    """The `split` ("train" or "test") pair file of the LFW copy `find_lfw` finds, or None."""
    folder = find_lfw(cache_dir)
    return getattr(locate_lfw(folder, cache_dir), f"{split}_pairs") if folder is not None else None


def _archives(folder: Path) -> list[Path]:
    return sorted(folder.glob("lfw*.tgz")) + sorted(folder.glob("lfw*.tar.gz")) if folder.is_dir() else []


def _looks_like_image_root(folder: Path) -> bool:
    for person in list(folder.iterdir())[:20]:
        if person.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in person.iterdir()):
            return True
    return False


def _image_roots(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    if _looks_like_image_root(folder):
        return [folder]
    return [d for d in sorted(folder.glob("lfw*")) if d.is_dir() and _looks_like_image_root(d)]


def locate_lfw(data: Path | None, cache_dir: Path = DEFAULT_CACHE) -> LFWLocation:
    """Resolve --data (a folder with pair files, an image root, or a .tgz) to images and pair
    files; None (what find_lfw returns when there is no copy) is the error that says where to get one."""
    if data is None:
        raise SiameseError(describe_lfw(cache_dir)[-1])
    data = Path(data)
    if not data.exists():
        raise SiameseError(f"data path not found: {data}")
    if data.is_file():
        if not data.name.endswith((".tgz", ".tar.gz")):
            raise SiameseError(f"{data}: expected an LFW folder or a .tgz archive")
        return LFWLocation(extract_archive(data, cache_dir), *_pair_files(data.parent))
    roots = _image_roots(data)
    if roots:
        root = roots[0]
    else:
        archives = _archives(data)
        if not archives:
            raise SiameseError(f"{data}: no LFW images found (no Person/ folders, no lfw*.tgz archive)")
        root = extract_archive(archives[0], cache_dir)
    return LFWLocation(root, *_pair_files(data))


def _pair_files(folder: Path) -> tuple[Path | None, Path | None]:
    for train, test in PAIR_FILE_CHOICES:
        if (folder / train).is_file() and (folder / test).is_file():
            return folder / train, folder / test
    return None, None


# what an archive may hold: LFW is 13,233 JPEGs of about 20 kB in 250 MB
MAX_MEMBER_BYTES = 64 << 20
MAX_ARCHIVE_BYTES = 8 << 30


def check_members(archive: Path, members: list[tarfile.TarInfo]) -> None:
    """Refuse, before anything is written, an archive member that is not a regular file or a
    folder (links, devices, FIFOs), whose name is absolute or climbs out with `..`, or whose
    size passes the bounds. Checked here whatever Python's own tarfile filters do (their
    "data" filter was bypassable: CVE-2025-4517)."""
    total, refused = 0, f"cannot extract {archive}: member"
    for m in members:
        parts = PurePosixPath(m.name).parts
        if not (m.isfile() or m.isdir()):
            raise SiameseError(f"{refused} {m.name!r} is a link or special file; refused")
        if m.name.startswith(("/", "\\")) or ".." in parts or ":" in m.name or "\\" in m.name or not parts:
            raise SiameseError(f"{refused} {m.name!r} would be written outside the extraction folder")
        if m.size > MAX_MEMBER_BYTES:
            raise SiameseError(f"{refused} {m.name!r} is {m.size} bytes, above {MAX_MEMBER_BYTES}")
        total += m.size
    if total > MAX_ARCHIVE_BYTES:
        raise SiameseError(f"cannot extract {archive}: {total} bytes, above the {MAX_ARCHIVE_BYTES} byte bound")


def write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path) -> None:
    """One checked member written by this code (never by tarfile's extract), inside `root`."""
    dest = root.joinpath(*PurePosixPath(member.name).parts)
    if not dest.resolve().is_relative_to(root.resolve()):
        raise SiameseError(f"member {member.name!r} resolves outside {root}")
    if member.isdir():
        dest.mkdir(parents=True, exist_ok=True)
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    with source, open(dest, "xb") as out:  # "x": never through a file (or link) already there
        shutil.copyfileobj(source, out)


def extract_archive(archive: Path, cache_dir: Path = DEFAULT_CACHE) -> Path:
    """Extract an LFW .tgz once into the cache and return its image root.

    The cache entry is keyed by the archive's name, size and mtime, extracted into a
    temporary folder and renamed into place, so an interrupted run never leaves a half
    extracted cache that a later run would trust.
    """
    stat = archive.stat()
    target = cache_dir / "extracted" / f"{archive.name.split('.')[0]}-{stat.st_size}-{stat.st_mtime_ns}"
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".partial-"))
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                check_members(archive, members)
                for member in tqdm(members, desc=f"extracting {archive.name}", unit="file", leave=False, disable=None):
                    write_member(tar, member, tmp)
            os.replace(tmp, target)
        except (tarfile.TarError, OSError, EOFError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise SiameseError(f"cannot extract {archive}: {exc}") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    roots = _image_roots(target)
    if not roots:
        raise SiameseError(f"{archive}: archive holds no Person/image folders")
    return roots[0]


class ImageBank:
    """Every image of a run, decoded once: (N, S, S, 3) uint8 plus key -> row."""

    def __init__(self, keys: list[str], images: torch.Tensor):
        self.keys = list(keys)
        self.images = images
        self.row = {k: i for i, k in enumerate(self.keys)}

    @classmethod
    def decode(
        cls, root: Path, keys: list[str], image_size: int, desc: str = "decoding", crop: float = 1.0
    ) -> ImageBank:
        """`crop`: the centred share of each frame the network sees (siamese.detect.framing.Framing.crop)."""
        keys = sorted(set(keys))
        images = np.empty((len(keys), image_size, image_size, 3), dtype=np.uint8)

        def load(i: int) -> None:
            images[i] = decode_image(image_file(root, keys[i]), image_size, name=str(root / keys[i]), crop=crop)

        # Pillow releases the GIL while decoding, so threads use every core (up to the decoding bound)
        with ThreadPoolExecutor(max_workers=DECODE_WORKERS) as pool:
            list(
                tqdm(
                    pool.map(load, range(len(keys))),
                    total=len(keys),
                    desc=desc,
                    unit="img",
                    leave=False,
                    disable=None,
                )
            )
        return cls(keys, torch.from_numpy(images))

    def indices(self, keys: list[str]) -> torch.Tensor:
        return torch.tensor([self.row[k] for k in keys], dtype=torch.long)


@dataclass
class PairSet:
    """Pairs as rows of an ImageBank."""

    a: torch.Tensor  # (P,) long
    b: torch.Tensor  # (P,) long
    same: torch.Tensor  # (P,) long, 1 same person

    @classmethod
    def from_pairs(cls, bank: ImageBank, pairs: list[Pair]) -> PairSet:
        return cls(
            bank.indices([p.a for p in pairs]),
            bank.indices([p.b for p in pairs]),
            torch.tensor([p.same for p in pairs], dtype=torch.long),
        )

    def __len__(self) -> int:
        return len(self.same)

    def subset(self, n: int) -> PairSet:
        return PairSet(self.a[:n], self.b[:n], self.same[:n])


def draw_pairs(by_identity: dict[str, torch.Tensor], n: int, generator: torch.Generator) -> PairSet:
    """n random pairs, half same and half different, drawn from the given identities only."""
    groups = list(by_identity.values())
    rows = torch.cat(groups)
    count = torch.tensor([len(g) for g in groups])
    start = torch.cumsum(count, 0) - count

    def pick(identity: torch.Tensor, avoid: torch.Tensor | None = None) -> torch.Tensor:
        # uniform image of each identity; with `avoid`, a different one of the same identity
        span = count[identity] - (0 if avoid is None else 1)
        k = (torch.rand(len(identity), generator=generator) * span).long()
        if avoid is not None:
            k += (k >= avoid).long()
        return k

    n_same = n // 2
    multi = torch.nonzero(count >= 2).squeeze(1)
    who = multi[torch.randint(len(multi), (n_same,), generator=generator)]
    first = pick(who)
    second = pick(who, avoid=first)
    p = torch.randint(len(groups), (n - n_same,), generator=generator)
    q = torch.randint(len(groups) - 1, (n - n_same,), generator=generator)
    q += (q >= p).long()
    a = torch.cat([rows[start[who] + first], rows[start[p] + pick(p)]])
    b = torch.cat([rows[start[who] + second], rows[start[q] + pick(q)]])
    same = torch.cat([torch.ones(n_same, dtype=torch.long), torch.zeros(n - n_same, dtype=torch.long)])
    return PairSet(a, b, same)


@dataclass
class IdentityBatch:
    """Bank rows of one training step and whose face each is: every pair inside is a training pair."""

    rows: torch.Tensor  # (B,) long
    identity: torch.Tensor  # (B,) long, equal values = same person


def identity_batches(
    by_identity: dict[str, torch.Tensor], per_batch: int, per_identity: int, generator: torch.Generator
) -> list[IdentityBatch]:
    """One epoch of P x K batches covering every image of the given identities once.

    Each identity's images are shuffled and cut into groups of at most K = `per_identity`
    (a lone leftover image joins the previous group, so no group of a multi-image person is
    a singleton); a batch takes P = `per_batch` random groups. People with one image come as
    groups of one: they only ever form different-person pairs.
    """
    if per_identity < 2 or per_batch < 2:
        raise SiameseError(
            f"identity batches need P >= 2 identities and K >= 2 images, got {per_batch} x {per_identity}"
        )
    groups: list[tuple[torch.Tensor, int]] = []
    for label, rows in enumerate(by_identity.values()):
        rows = rows[torch.randperm(len(rows), generator=generator)]
        cuts = list(range(0, len(rows), per_identity))
        if len(cuts) > 1 and len(rows) - cuts[-1] == 1:
            cuts.pop()
        groups += [(chunk, label) for chunk in torch.tensor_split(rows, cuts[1:])]
    order = torch.randperm(len(groups), generator=generator).tolist()
    batches = []
    for start in range(0, len(order), per_batch):
        chosen = [groups[i] for i in order[start : start + per_batch]]
        if len(chosen) < 2:
            break
        batches.append(
            IdentityBatch(
                torch.cat([rows for rows, _ in chosen]),
                torch.cat([torch.full((len(rows),), label) for rows, label in chosen]),
            )
        )
    return batches


@dataclass
class Dataset:
    name: str  # "lfw" or "synthetic"
    bank: ImageBank
    train: PairSet
    test: PairSet
    # identity -> bank rows, for training identities only: the pool extra training pairs come from
    train_identities: dict[str, torch.Tensor]
    info: dict = field(default_factory=dict)
    # pairs of held-out training identities (people the network never trains on), for every
    # choice made during training: the decision threshold above all; None: no split
    val: PairSet | None = None
    # every person of the training list, held-out validation people included: whoever trained or
    # tuned the model, so no evaluation may call them unseen (recorded in the training summary)
    people: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.people:
            self.people = tuple(sorted(self.train_identities))

    def draw_pairs(self, n: int, generator: torch.Generator) -> PairSet:
        return draw_pairs(self.train_identities, n, generator)

    def identity_batches(self, per_batch: int, per_identity: int, generator: torch.Generator) -> list[IdentityBatch]:
        return identity_batches(self.train_identities, per_batch, per_identity, generator)

    def split_validation(self, fraction: float, n_pairs: int, seed: int = 0) -> Dataset:
        """Hold out `fraction` of the training identities (people, not images) and draw `n_pairs`
        balanced validation pairs among them; training keeps only the other identities."""
        if not 0 < fraction < 1:
            raise SiameseError(f"validation fraction must be between 0 and 1, got {fraction}")
        g = torch.Generator().manual_seed(seed)
        people = list(self.train_identities)
        order = torch.randperm(len(people), generator=g).tolist()
        n_val = round(fraction * len(people))
        held = {people[i] for i in order[:n_val]}
        val_ids = {p: rows for p, rows in self.train_identities.items() if p in held}
        if n_val < 2 or not any(len(r) >= 2 for r in val_ids.values()) or n_val == len(people):
            raise SiameseError(
                f"a validation split of {fraction:.0%} of {len(people)} training identities leaves too few people "
                "on one side (it needs two, one with two images, and some left to train on)"
            )
        kept = {p: rows for p, rows in self.train_identities.items() if p not in held}
        kept_rows = torch.cat(list(kept.values()))
        in_kept = torch.isin(self.train.a, kept_rows) & torch.isin(self.train.b, kept_rows)
        train = PairSet(self.train.a[in_kept], self.train.b[in_kept], self.train.same[in_kept])
        info = {
            **self.info,
            "validation": f"{len(held)} of {len(people)} training identities held out, {n_pairs} pairs (seed {seed})",
            "n_train_identities": len(kept),
        }
        return replace(self, train=train, train_identities=kept, info=info, val=draw_pairs(val_ids, n_pairs, g))


def _person_images(root: Path, person: str) -> list[str]:
    folder = root / person
    if not folder.is_dir():
        return []
    return sorted(f"{person}/{f.name}" for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)


def run_images(root: Path, train: list[Pair], test: list[Pair], all_identity_images: bool = True) -> set[str]:
    """The keys of every image a run decodes: both pair lists' and, with `all_identity_images`,
    every image of each training identity (the pool that identity batches draw from)."""
    keys = {k for p in train + test for k in (p.a, p.b)}
    if all_identity_images:
        keys |= {k for person in sorted(identities(train)) for k in _person_images(root, person)}
    return keys


def load_lfw(
    data: Path,
    image_size: int,
    train_pairs: Path | None = None,
    test_pairs: Path | None = None,
    cache_dir: Path = DEFAULT_CACHE,
    limit: int | None = None,
    all_identity_images: bool = True,
    crop: float = 1.0,
) -> Dataset:
    """LFW pairs plus every image of each training identity, decoded once.

    `limit` keeps the first `limit` pairs of each list (balanced by taking from both ends
    of the file, which holds the same-person pairs first) for quick runs and tests.
    """
    loc = locate_lfw(data, cache_dir)
    train_file = train_pairs or loc.train_pairs
    test_file = test_pairs or loc.test_pairs
    if train_file is None or test_file is None:
        raise SiameseError(
            f"{data}: no pair files found (looked for {' or '.join(map('/'.join, PAIR_FILE_CHOICES))}); "
            "pass --train-pairs and --test-pairs"
        )
    train, test = read_pairs(train_file), read_pairs(test_file)
    if limit:
        train, test = _balanced_head(train, limit), _balanced_head(test, limit)
    train_ids, test_ids = identities(train), identities(test)
    shared = sorted(train_ids & test_ids)
    if shared:
        raise SiameseError(
            f"{train_file} and {test_file} share {len(shared)} identities (e.g. {', '.join(shared[:3])}): "
            "training would see test identities"
        )
    keys = run_images(loc.image_root, train, test, all_identity_images)
    bank = ImageBank.decode(loc.image_root, sorted(keys), image_size, desc="decoding LFW", crop=crop)
    by_identity: dict[str, list[int]] = {}
    for k in keys:
        if identity_of(k) in train_ids:
            by_identity.setdefault(identity_of(k), []).append(bank.row[k])
    info = {
        "data_set": "lfw",
        "image_root": str(loc.image_root),
        "train_pairs": str(train_file),
        "test_pairs": str(test_file),
        "n_train_pairs": len(train),
        "n_test_pairs": len(test),
        "n_train_identities": len(train_ids),
        "n_train_identity_images": sum(len(v) for v in by_identity.values()),
    }
    return Dataset(
        "lfw",
        bank,
        PairSet.from_pairs(bank, train),
        PairSet.from_pairs(bank, test),
        {k: torch.tensor(sorted(v)) for k, v in sorted(by_identity.items())},
        info,
    )


def _balanced_head(pairs: list[Pair], limit: int) -> list[Pair]:
    same = [p for p in pairs if p.same][: (limit + 1) // 2]
    different = [p for p in pairs if not p.same][: limit // 2]
    return same + different


def sample_pairs(
    pairs_file: Path, image_size: int, n: int, seed: int = 0, image_root: Path | None = None, *, crop: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n randomly chosen pairs of a pair file, decoded as the network sees them (each frame's
    centred `crop` share, resized): image_a, image_b (N, S, S, 3) uint8 and labels (N,).

    The image root defaults to the LFW images beside the pair file.
    """
    pairs = read_pairs(pairs_file)
    root = image_root or locate_lfw(Path(pairs_file).parent).image_root
    chosen = [pairs[i] for i in np.random.default_rng(seed).permutation(len(pairs))[:n]]
    empty = np.zeros((0, image_size, image_size, 3), np.uint8)
    a = np.stack([decode_image(image_file(root, p.a), image_size, crop=crop) for p in chosen]) if chosen else empty
    b = np.stack([decode_image(image_file(root, p.b), image_size, crop=crop) for p in chosen]) if chosen else empty
    return a, b, np.array([p.same for p in chosen], np.int8)


def random_pairs(n: int, image_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n pairs of seeded uniform-noise uint8 images."""
    noise = np.random.default_rng(seed).integers(0, 256, (2, n, image_size, image_size, 3), dtype=np.uint8)
    return noise[0], noise[1]
