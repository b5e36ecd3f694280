"""siamese-data fetch refuses bad options and destinations before downloading anything."""

import pytest
from refusals import ERROR, USAGE, assert_refused

from siamese.cli import data as data_cli


def test_retries_must_be_positive(tmp_path):
    assert_refused(
        data_cli.main,
        ["fetch", "--retries", "0", "--dest", tmp_path],
        "Invalid value for '--retries'",
        USAGE,
        [tmp_path],
    )


def test_a_destination_that_is_a_file(tmp_path):
    blocker = tmp_path / "lfw"
    blocker.write_text("x")
    assert_refused(data_cli.main, ["fetch", "--dest", blocker], "cannot write into .*lfw", ERROR, [tmp_path])


def test_no_lfw_found_is_the_error_that_says_where_to_get_it(tmp_path, monkeypatch):
    from siamese.core.errors import SiameseError
    from siamese.data.lfw import find_lfw, locate_lfw

    monkeypatch.delenv("SIAMESE_LFW", raising=False)
    assert find_lfw(tmp_path) is None
    with pytest.raises(SiameseError, match="siamese-data fetch"):
        locate_lfw(find_lfw(tmp_path), tmp_path)
