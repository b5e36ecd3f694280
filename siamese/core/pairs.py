"""Parsers for the pair-list formats a user may hand us.

- assignment format: `Name/Name_0001.jpg Other/Other_0003.jpg 1` (label 1 = same person);
- official LFW View 1 (`pairsDevTrain.txt`, `pairsDevTest.txt`): header `N`, then N lines
  `name n1 n2` (same) and N lines `name1 n1 name2 n2` (different), tab separated;
- official LFW View 2 (`pairs.txt`): header `folds per_fold`, then per fold `per_fold` same
  and `per_fold` different lines; each pair keeps its fold.

Files may start with a byte-order mark, end lines in CRLF and separate fields with tabs or
spaces. Every problem is reported as `file:line: what is wrong`; a list without pairs, a pair
of an image with itself, and labelled lines mixed with unlabelled ones are refused, and
repeated pairs (in either order) are counted in a warning.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from siamese.core.errors import SiameseError, SiameseWarning
from siamese.core.files import read_limited


@dataclass(frozen=True)
class Pair:
    a: str  # image key relative to the image root, e.g. "Name/Name_0001.jpg"
    b: str
    same: int  # 1 same person, 0 different, -1 unlabelled
    fold: int | None = None  # LFW View 2 fold, None elsewhere


def identity_of(key: str) -> str:
    return PurePosixPath(key).parts[0]


def check_key(key: str, where: str) -> str:
    """Refuse image paths that could leave the image root."""
    path = PurePosixPath(key)
    unsafe = "\\" in key or ":" in key or any(ord(c) < 32 or ord(c) == 127 for c in key)
    if unsafe or path.is_absolute() or ".." in path.parts or len(path.parts) < 2:
        raise SiameseError(f"{where}: image path {key!r} must be 'Person/file.jpg' inside the image root")
    return key


def lfw_key(name: str, number: str, where: str) -> str:
    if not re.fullmatch(r"[0-9]{1,6}", number):
        raise SiameseError(f"{where}: image number {number!r} is not a whole number")
    n = int(number)
    if n < 1:
        raise SiameseError(f"{where}: image number {n} must be 1 or more")
    return check_key(f"{name}/{name}_{n:04d}.jpg", where)


def _parse_label(text: str, where: str) -> int:
    if text not in ("0", "1"):
        raise SiameseError(f"{where}: label {text!r} must be 0 or 1")
    return int(text)


def _is_official_header(fields: list[str]) -> bool:
    return 1 <= len(fields) <= 2 and all(re.fullmatch(r"[0-9]{1,7}", f) for f in fields)


def read_pairs(path: str | Path, labels_required: bool = True) -> list[Pair]:
    """Read any supported pair file; the format is recognised from its first line.

    With `labels_required=False`, assignment-format lines may omit the label (same = -1).
    """
    path = Path(path)
    try:
        text = read_limited(path, "pair file").decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SiameseError(f"cannot read pair file {path}: {exc}") from None
    return parse_pairs(text, str(path), labels_required)


def parse_pairs(text: str, source: str = "<pairs>", labels_required: bool = True) -> list[Pair]:
    """`read_pairs` on text already read; `source` names it in errors."""
    lines = [(i, line.split()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise SiameseError(f"{source}: pair file is empty")
    if _is_official_header(lines[0][1]):
        pairs = _parse_official(source, lines)
    else:
        pairs = [_parse_assignment_line(fields, f"{source}:{i}", labels_required) for i, fields in lines]
        labelled = {p.same >= 0 for p in pairs}
        if len(labelled) > 1:
            first = next(i for (i, _), p in zip(lines, pairs, strict=True) if p.same < 0)
            raise SiameseError(f"{source}:{first}: a line without a label among labelled ones: label all or none")
    if not pairs:
        raise SiameseError(f"{source}: the list holds no pairs")
    repeats = Counter(frozenset((p.a, p.b)) for p in pairs)
    extra = sum(n - 1 for n in repeats.values())
    if extra:
        warnings.warn(
            f"{source}: {extra} repeated pairs (the same two images again, in either order)",
            SiameseWarning,
            stacklevel=2,
        )
    return pairs


def _parse_assignment_line(fields: list[str], where: str, labels_required: bool = True) -> Pair:
    if len(fields) == 2 and not labels_required:
        return _pair(fields[0], fields[1], -1, where)
    if len(fields) != 3:
        raise SiameseError(f"{where}: expected 'imageA imageB label', got {len(fields)} fields")
    return _pair(fields[0], fields[1], _parse_label(fields[2], where), where)


def _pair(a: str, b: str, same: int, where: str, fold: int | None = None) -> Pair:
    if a == b:
        raise SiameseError(f"{where}: pairs image {a!r} with itself")
    return Pair(check_key(a, where), check_key(b, where), same, fold)


def _parse_official(source: str, lines: list[tuple[int, list[str]]]) -> list[Pair]:
    header = [int(f) for f in lines[0][1]]
    folds, per_fold = (1, header[0]) if len(header) == 1 else header
    body = lines[1:]
    expected = folds * per_fold * 2
    if len(body) != expected:
        raise SiameseError(
            f"{source}:{lines[0][0]}: header promises {expected} pairs ({folds} folds x {per_fold} same + "
            f"{per_fold} different), file has {len(body)}"
        )
    pairs = []
    for k, (i, fields) in enumerate(body):
        where = f"{source}:{i}"
        fold, within = divmod(k, 2 * per_fold)
        same_expected = within < per_fold
        fold_or_none = fold if folds > 1 else None
        if len(fields) == 3 and same_expected:
            a, b = lfw_key(fields[0], fields[1], where), lfw_key(fields[0], fields[2], where)
            pairs.append(_pair(a, b, 1, where, fold_or_none))
        elif len(fields) == 4 and not same_expected:
            a, b = lfw_key(fields[0], fields[1], where), lfw_key(fields[2], fields[3], where)
            pairs.append(_pair(a, b, 0, where, fold_or_none))
        else:
            kind = "'name n1 n2' (same person)" if same_expected else "'name1 n1 name2 n2' (different people)"
            raise SiameseError(f"{where}: expected {kind}, got {len(fields)} fields")
    return pairs


def identities(pairs: list[Pair]) -> set[str]:
    return {identity_of(k) for p in pairs for k in (p.a, p.b)}
