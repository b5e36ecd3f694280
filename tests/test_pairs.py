from pathlib import Path

import pytest

from siamese.errors import SiameseError
from siamese.pairs import Pair, read_pairs


def write(tmp_path: Path, text: str, name: str = "pairs.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_assignment_format(tmp_path):
    path = write(tmp_path, "A/A_0001.jpg A/A_0002.jpg 1\nA/A_0001.jpg B/B_0003.jpg 0\n\n")
    assert read_pairs(path) == [
        Pair("A/A_0001.jpg", "A/A_0002.jpg", 1),
        Pair("A/A_0001.jpg", "B/B_0003.jpg", 0),
    ]


def test_view1_format(tmp_path):
    path = write(tmp_path, "2\nA\t1\t2\nB\t3\t14\nA\t1\tC\t2\nB\t2\tD\t1\n")
    pairs = read_pairs(path)
    assert pairs[0] == Pair("A/A_0001.jpg", "A/A_0002.jpg", 1)
    assert pairs[1] == Pair("B/B_0003.jpg", "B/B_0014.jpg", 1)
    assert pairs[2] == Pair("A/A_0001.jpg", "C/C_0002.jpg", 0)
    assert [p.same for p in pairs] == [1, 1, 0, 0]
    assert all(p.fold is None for p in pairs)


def test_view2_format_keeps_folds(tmp_path):
    lines = ["3\t1"]
    for fold in range(3):
        lines += [f"S{fold}\t1\t2", f"X{fold}\t1\tY{fold}\t1"]
    pairs = read_pairs(write(tmp_path, "\n".join(lines) + "\n"))
    assert [p.fold for p in pairs] == [0, 0, 1, 1, 2, 2]
    assert [p.same for p in pairs] == [1, 0] * 3
    assert pairs[3] == Pair("X1/X1_0001.jpg", "Y1/Y1_0001.jpg", 0, 1)


def test_real_pair_files(lfw_dir):
    dev_train = read_pairs(lfw_dir / "pairsDevTrain.txt")
    assignment = read_pairs(lfw_dir / "train.txt")
    assert len(dev_train) == 2200 and sum(p.same for p in dev_train) == 1100
    assert {(p.a, p.b, p.same) for p in dev_train} == {(p.a, p.b, p.same) for p in assignment}
    assert len(read_pairs(lfw_dir / "pairsDevTest.txt")) == len(read_pairs(lfw_dir / "test.txt")) == 1000


@pytest.mark.parametrize(
    "text, message",
    [
        ("A/A_0001.jpg A/A_0002.jpg\n", r"pairs.txt:1: expected 'imageA imageB label', got 2 fields"),
        (
            "A/A_0001.jpg A/A_0002.jpg 1\nA/A_0001.jpg B/B_0001.jpg yes\n",
            r"pairs.txt:2: label 'yes' must be 0 or 1",
        ),
        ("A/A_0001.jpg A/A_0002.jpg 2\n", r"label '2' must be 0 or 1"),
        ("../etc/passwd A/A_0002.jpg 1\n", r"pairs.txt:1: image path '../etc/passwd'"),
        ("/etc/passwd A/A_0002.jpg 1\n", r"image path '/etc/passwd'"),
        ("A/../../x.jpg A/A_0002.jpg 1\n", r"image path 'A/../../x.jpg'"),
        ("1\nA\t1\tx\nA\t1\tB\t1\n", r"pairs.txt:2: image number 'x' is not an integer"),
        ("1\nA\t1\nA\t1\tB\t1\n", r"pairs.txt:2: expected 'name n1 n2' \(same person\), got 2 fields"),
        ("2\nA\t1\t2\nA\t1\tB\t1\n", r"header promises 4 pairs .* file has 2"),
        ("1\n..\t1\t2\nA\t1\tB\t1\n", r"pairs.txt:2: image path"),
        ("\n  \n", r"pairs.txt: pair file is empty"),
    ],
)
def test_malformed_files_name_the_file_and_line(tmp_path, text, message):
    with pytest.raises(SiameseError, match=message):
        read_pairs(write(tmp_path, text))


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(SiameseError, match="pair file not found"):
        read_pairs(tmp_path / "nope.txt")
    path = tmp_path / "bin.txt"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SiameseError, match="cannot read pair file"):
        read_pairs(path)
