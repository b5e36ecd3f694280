"""A training pack: the LFW images one training run decodes, resized to the training size and
re-encoded as JPEG, in LFW's own layout with its pair files, so that every tool reads it as an
LFW copy (`siamese-train --data PACK`). It exists to carry training to a machine that has no
LFW and little room to bring one (the GPU check, docs/gpu.md): about 4 KB an image at 128 px.

Its pixels are not the original's: they went through one more JPEG encoding, so a pack is for
measuring training (speed, the data pipeline's share), never for an accuracy figure."""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from siamese.core.errors import SiameseError
from siamese.core.files import DEFAULT_CACHE, check_writable, write_json
from siamese.core.pairs import identities, read_pairs
from siamese.core.preprocess import DECODE_WORKERS, decode_image, image_file
from siamese.core.records import from_dict, to_dict
from siamese.core.spec import SPEC_IMAGE_SIZE
from siamese.data.lfw import locate_lfw, run_images

RECORD = "pack.json"


@dataclass(frozen=True)
class PackRecord:
    """What pack.json says about the pack beside it."""

    SCHEMA = "siamese-pack/1"

    source: str  # the image root it was made from
    train_pairs: str
    test_pairs: str
    image_size: int
    jpeg_quality: int
    images: int
    train_identities: int
    image_bytes: int

    @classmethod
    def read(cls, pack: Path) -> PackRecord:
        import json

        path = Path(pack) / RECORD
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SiameseError(f"{path}: not a training pack's record ({exc})") from None
        return from_dict(cls, data, str(path))


def write_pack(
    data: Path, dest: Path, image_size: int = SPEC_IMAGE_SIZE, quality: int = 90, cache_dir=DEFAULT_CACHE
) -> PackRecord:
    """Pack the images a run on `data` (an LFW folder or archive) decodes into `dest`, a new folder."""
    loc = locate_lfw(data, cache_dir)
    if loc.train_pairs is None or loc.test_pairs is None:
        raise SiameseError(f"{data}: no pair files beside the images; a pack holds the images of its pair lists")
    dest = Path(dest)
    if dest.exists():
        raise SiameseError(f"{dest} exists: remove it or choose another folder")
    train, test = read_pairs(loc.train_pairs), read_pairs(loc.test_pairs)
    keys = sorted(run_images(loc.image_root, train, test))
    partial = check_writable(dest.parent) / f".{dest.name}.partial-{os.getpid()}"
    root = partial / f"lfw-{image_size}"  # _image_roots finds an `lfw*` folder of Person/ folders

    def pack_one(key: str) -> int:
        target = root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        rgb = decode_image(image_file(loc.image_root, key), image_size, name=str(loc.image_root / key))
        Image.fromarray(rgb).save(target, format="JPEG", quality=quality)
        return target.stat().st_size

    try:
        with ThreadPoolExecutor(max_workers=DECODE_WORKERS) as pool:
            sizes = list(pool.map(pack_one, keys))
        for pairs in (loc.train_pairs, loc.test_pairs):
            shutil.copyfile(pairs, partial / pairs.name)
        record = PackRecord(
            source=str(loc.image_root),
            train_pairs=loc.train_pairs.name,
            test_pairs=loc.test_pairs.name,
            image_size=image_size,
            jpeg_quality=quality,
            images=len(keys),
            train_identities=len(identities(train)),
            image_bytes=sum(sizes),
        )
        write_json(partial / RECORD, to_dict(record))
        partial.rename(dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return record
