from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siamese.core.errors import SiameseError, SiameseWarning
from siamese.core.pairs import Pair, check_key, parse_pairs, read_pairs


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


@pytest.mark.filterwarnings("error::siamese.core.errors.SiameseWarning")  # no repeated pair in LFW's lists
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
        ("1\nA\t1\tx\nA\t1\tB\t1\n", r"pairs.txt:2: image number 'x' is not a whole number"),
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


def test_encodings_users_really_have(tmp_path):
    """A byte-order mark, CRLF line ends and tabs read the same as plain UTF-8 with spaces."""
    plain = read_pairs(write(tmp_path, "A/A_0001.jpg A/A_0002.jpg 1\nA/A_0001.jpg B/B_0003.jpg 0\n"))
    odd = tmp_path / "odd.txt"
    odd.write_bytes(b"\xef\xbb\xbfA/A_0001.jpg\tA/A_0002.jpg 1\r\nA/A_0001.jpg\t\tB/B_0003.jpg\t0\r\n")
    assert read_pairs(odd) == plain
    official = tmp_path / "view1.txt"
    official.write_bytes(b"\xef\xbb\xbf1\r\nA\t1\t2\r\nA\t1\tC\t2\r\n")
    assert [p.same for p in read_pairs(official)] == [1, 0]


def test_repeated_pairs_are_counted_in_a_warning(tmp_path):
    text = "A/A_0001.jpg A/A_0002.jpg 1\nA/A_0002.jpg A/A_0001.jpg 1\nA/A_0001.jpg B/B_0003.jpg 0\n" * 2
    with pytest.warns(SiameseWarning, match="pairs.txt: 4 repeated pairs"):
        pairs = read_pairs(write(tmp_path, text))
    assert len(pairs) == 6  # kept: the user decides, the toolkit says so


def test_labelled_and_unlabelled_lines_do_not_mix(tmp_path):
    path = write(tmp_path, "A/A_0001.jpg A/A_0002.jpg 1\nA/A_0001.jpg B/B_0003.jpg\n")
    with pytest.raises(SiameseError, match="pairs.txt:2: a line without a label among labelled ones"):
        read_pairs(path, labels_required=False)
    unlabelled = read_pairs(write(tmp_path, "A/A_0001.jpg A/A_0002.jpg\n", "u.txt"), labels_required=False)
    assert unlabelled == [Pair("A/A_0001.jpg", "A/A_0002.jpg", -1)]


def test_a_folder_is_not_a_pair_file(tmp_path):
    with pytest.raises(SiameseError, match="is a folder, not a pair file"):
        read_pairs(tmp_path)


# text built from the pieces pair files are made of, so that most examples get deep into the parsers
PIECES = st.sampled_from(
    ["A", "B/B_0001.jpg", "A/A_0002.jpg", "1", "0", "2", "12", "\t", " ", "\n", "\r\n", "..", "/", "x"]
)
TEXTS = st.one_of(st.text(max_size=200), st.lists(PIECES, max_size=60).map("".join))


@pytest.mark.filterwarnings("ignore::siamese.core.errors.SiameseWarning")
@settings(max_examples=400, deadline=None)
@given(text=TEXTS, labels_required=st.booleans())
def test_any_text_parses_into_valid_pairs_or_a_toolkit_error(text, labels_required):
    try:
        pairs = parse_pairs(text, "fuzz.txt", labels_required)
    except SiameseError as exc:
        assert str(exc).startswith("fuzz.txt")
        return
    assert pairs
    for pair in pairs:
        assert pair.a != pair.b
        assert check_key(pair.a, "a") == pair.a and check_key(pair.b, "b") == pair.b
        assert pair.same in ((0, 1) if labels_required else (-1, 0, 1))
    assert len({p.same < 0 for p in pairs}) == 1


@pytest.mark.filterwarnings("ignore::siamese.core.errors.SiameseWarning")
@settings(max_examples=200, deadline=None)
@given(
    same=st.lists(st.tuples(st.sampled_from("ABC"), st.integers(1, 9), st.integers(1, 9)), min_size=1, max_size=5),
    folds=st.integers(1, 3),
)
def test_generated_official_files_round_trip(same, folds):
    """Well-formed View 1/View 2 text parses to exactly the pairs it was written from."""
    same = [(n, i, j) for n, i, j in same if i != j] or [("A", 1, 2)]
    body = "".join(f"{n}\t{i}\t{j}\n" for n, i, j in same) + "".join(f"{n}\t{i}\tZ\t{j}\n" for n, i, j in same)
    header = f"{len(same)}\n" if folds == 1 else f"{folds}\t{len(same)}\n"
    pairs = parse_pairs(header + body * folds, "gen.txt")
    assert len(pairs) == 2 * len(same) * folds
    assert pairs[0] == Pair(
        f"{same[0][0]}/{same[0][0]}_{same[0][1]:04d}.jpg",
        f"{same[0][0]}/{same[0][0]}_{same[0][2]:04d}.jpg",
        1,
        0 if folds > 1 else None,
    )
    assert sum(p.same for p in pairs) == len(same) * folds
