"""Parsers for the pair-list formats a user may hand us.

- assignment format: `Name/Name_0001.jpg Other/Other_0003.jpg 1` (label 1 = same person);
- official LFW View 1 (`pairsDevTrain.txt`, `pairsDevTest.txt`): header `N`, then N lines
  `name n1 n2` (same) and N lines `name1 n1 name2 n2` (different), tab separated;
- official LFW View 2 (`pairs.txt`): header `folds per_fold`, then per fold `per_fold` same
  and `per_fold` different lines; each pair keeps its fold.

Every problem is reported as `file:line: what is wrong`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from siamese.errors import SiameseError


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
    if "\\" in key or ":" in key or path.is_absolute() or ".." in path.parts or len(path.parts) < 2:
        raise SiameseError(f"{where}: image path {key!r} must be 'Person/file.jpg' inside the image root")
    return key


def lfw_key(name: str, number: str, where: str) -> str:
    try:
        n = int(number)
    except ValueError:
        raise SiameseError(f"{where}: image number {number!r} is not an integer") from None
    if n < 1:
        raise SiameseError(f"{where}: image number {n} must be 1 or more")
    return check_key(f"{name}/{name}_{n:04d}.jpg", where)


def _parse_label(text: str, where: str) -> int:
    if text not in ("0", "1"):
        raise SiameseError(f"{where}: label {text!r} must be 0 or 1")
    return int(text)


def _is_official_header(fields: list[str]) -> bool:
    return 1 <= len(fields) <= 2 and all(f.isdigit() for f in fields)


def read_pairs(path: str | Path, labels_required: bool = True) -> list[Pair]:
    """Read any supported pair file; the format is recognised from its first line.

    With `labels_required=False`, assignment-format lines may omit the label (same = -1).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SiameseError(f"pair file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SiameseError(f"cannot read pair file {path}: {exc}") from None
    lines = [(i, line.split()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise SiameseError(f"{path}: pair file is empty")
    if _is_official_header(lines[0][1]):
        pairs = _parse_official(path, lines)
    else:
        pairs = [_parse_assignment_line(fields, f"{path}:{i}", labels_required) for i, fields in lines]
    return pairs


def _parse_assignment_line(fields: list[str], where: str, labels_required: bool = True) -> Pair:
    if len(fields) == 2 and not labels_required:
        return Pair(check_key(fields[0], where), check_key(fields[1], where), -1)
    if len(fields) != 3:
        raise SiameseError(f"{where}: expected 'imageA imageB label', got {len(fields)} fields")
    return Pair(check_key(fields[0], where), check_key(fields[1], where), _parse_label(fields[2], where))


def _parse_official(path: Path, lines: list[tuple[int, list[str]]]) -> list[Pair]:
    header = [int(f) for f in lines[0][1]]
    folds, per_fold = (1, header[0]) if len(header) == 1 else header
    body = lines[1:]
    expected = folds * per_fold * 2
    if len(body) != expected:
        raise SiameseError(
            f"{path}:{lines[0][0]}: header promises {expected} pairs ({folds} folds x {per_fold} same + "
            f"{per_fold} different), file has {len(body)}"
        )
    pairs = []
    for k, (i, fields) in enumerate(body):
        where = f"{path}:{i}"
        fold, within = divmod(k, 2 * per_fold)
        same_expected = within < per_fold
        if len(fields) == 3 and same_expected:
            pair = Pair(lfw_key(fields[0], fields[1], where), lfw_key(fields[0], fields[2], where), 1)
        elif len(fields) == 4 and not same_expected:
            pair = Pair(lfw_key(fields[0], fields[1], where), lfw_key(fields[2], fields[3], where), 0)
        else:
            kind = "'name n1 n2' (same person)" if same_expected else "'name1 n1 name2 n2' (different people)"
            raise SiameseError(f"{where}: expected {kind}, got {len(fields)} fields")
        pairs.append(Pair(pair.a, pair.b, pair.same, fold if folds > 1 else None))
    return pairs


def identities(pairs: list[Pair]) -> set[str]:
    return {identity_of(k) for p in pairs for k in (p.a, p.b)}
