"""siamese-data fetch refuses bad options and destinations before downloading anything."""

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
