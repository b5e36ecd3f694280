"""docs/results/ is rendered from its data: the committed pages are what the recorded JSON
renders, and a recorded run shows up with its interval, command, host and commit."""

import shutil
from dataclasses import replace

import pytest

from bench import pages
from siamese.artifacts.records import TrainingSummary
from siamese.core.errors import SiameseError
from siamese.core.files import write_json

SUMMARY = TrainingSummary(
    data_set="lfw",
    split="train: pairsDevTrain.txt; test: pairsDevTest.txt",
    variant="bce",
    head="diff-prod",
    image_size=128,
    accuracy=0.835,
    threshold=0.4832,
    threshold_on="validation pairs",
    auc=0.911,
    eer=0.164,
    n_test_pairs=1000,
    epochs=8,
    wall_time_s=2542.0,
    processes=1,
    val_accuracy=0.858,
    tar_at_far={"0.01": 0.306, "0.001": 0.092},
    git_commit="fee5323aaaaaaaaa",
    command="siamese-train --variant bce",
    host="AMD EPYC 9R14, 2 cores",
    finished="2026-11-25T10:00:00+00:00",
    config={"amp": "bf16", "seed": 3, "val_pairs": 1000},
)


def test_the_committed_pages_are_what_their_data_renders(tmp_path):
    if (pages.RESULTS / "data").exists():
        shutil.copytree(pages.RESULTS / "data", tmp_path / "data")
    shutil.copyfile(pages.README, tmp_path / "README.md")
    for page in pages.render(tmp_path, tmp_path / "README.md"):
        committed = pages.ROOT / "README.md" if page.name == "README.md" else pages.RESULTS / page.name
        assert committed.read_text() == page.read_text(), f"{committed} is stale: run python -m bench.pages"


def test_wilson_interval_matches_the_textbook_and_stays_inside_0_1():
    low, high = pages.wilson_interval(0.835, 1000)
    assert (round(low, 4), round(high, 4)) == (0.8107, 0.8567)  # about +-2.3 points on 1,000 pairs
    assert pages.wilson_interval(1.0, 20)[1] == 1.0 and pages.wilson_interval(0.0, 20)[0] == 0.0


def readme(tmp_path):
    (tmp_path / "README.md").write_text(f"# x\n\n{pages.README_BEGIN}\nold\n{pages.README_END}\n\nmore\n")
    return tmp_path / "README.md"


def test_a_recorded_run_is_a_row_with_its_interval_command_host_and_commit(tmp_path):
    write_json(tmp_path / "summary.json", SUMMARY.to_dict())
    written = pages.add([tmp_path / "summary.json"], None, tmp_path / "results", readme(tmp_path))
    assert (tmp_path / "results" / "data" / "training" / "2026-11-25-lfw-bce.json") in written
    page = (tmp_path / "results" / "training.md").read_text()
    assert "| **0.835** (0.811-0.857, n = 1000) |" in page
    assert "| AMD EPYC 9R14, 2 cores | 2026-11-25 | fee5323 |" in page and "| bf16 |" in page
    assert "- 2026-11-25-lfw-bce: `siamese-train --variant bce`" in page
    table = (tmp_path / "README.md").read_text()
    assert "old" not in table and table.endswith(f"{pages.README_END}\n\nmore\n")
    assert (
        "| bce, diff-prod head | `siamese-train --variant bce` | 8 | 3 | 0.858 (0.835-0.878) | **0.835** (0.811-0.857) "
        "| 0.911 | 0.164 | 0.306 |" in table
    )
    with pytest.raises(SiameseError, match="recorded already"):
        pages.add([tmp_path / "summary.json"], None, tmp_path / "results", tmp_path / "README.md")
    later = replace(SUMMARY, accuracy=0.9, finished="2026-12-01T00:00:00+00:00")
    write_json(tmp_path / "later.json", later.to_dict())
    pages.add([tmp_path / "later.json"], "seed-1", tmp_path / "results", tmp_path / "README.md")
    assert "| seed-1 | bce, diff-prod head |" in (tmp_path / "results" / "training.md").read_text()
    table = (tmp_path / "README.md").read_text()
    assert "**0.900**" in table and "**0.835**" not in table  # the README shows each model's latest run


def test_a_file_that_is_no_result_is_refused_by_name(tmp_path):
    (tmp_path / "x.json").write_text('{"schema": "something-else/1"}')
    with pytest.raises(SiameseError, match="x.json is neither a training summary"):
        pages.add([tmp_path / "x.json"], None, tmp_path / "results", readme(tmp_path))
    assert not (tmp_path / "results" / "data").exists()


def test_a_recipe_at_three_seeds_shows_its_spread_on_both_pages_beside_no_proxy_run_row(tmp_path):
    proxy = replace(SUMMARY, image_size=64, command="siamese-train --variant both --image-size 64")
    records = {
        "bce-0": replace(proxy, accuracy=0.70, val_accuracy=0.71, command=f"{proxy.command} --seed 0 --out r0"),
        "bce-1": replace(proxy, accuracy=0.74, val_accuracy=0.75, command=f"{proxy.command} --out r1 --seed 1"),
        "bce-2": replace(proxy, accuracy=0.72, val_accuracy=0.73, command=f"{proxy.command} --seed=2 --out=r2"),
        # the same command's other variant, and a run without validation: its own recipe
        "contrastive-0": replace(proxy, variant="contrastive", val_accuracy=None, command=f"{proxy.command} --seed 0"),
        "contrastive-1": replace(proxy, variant="contrastive", val_accuracy=None, command=f"{proxy.command} --seed 1"),
        "other": replace(proxy, command=f"{proxy.command} --lr 1e-3 --seed 5"),  # one seed is no spread
    }
    for name, record in records.items():
        seed = int(record.command.rsplit("seed", 1)[1].split()[0].strip("= "))
        write_json(tmp_path / f"{name}.json", replace(record, config={**record.config, "seed": seed}).to_dict())
        pages.add([tmp_path / f"{name}.json"], name, tmp_path / "results", readme(tmp_path))
    bce = "| bce, diff-prod head | `siamese-train --variant both --image-size 64` | 64 | 8 | 0, 1, 2 "
    bce += "| 0.730 +- 0.020 (0.710-0.750) | 0.720 +- 0.020 (0.700-0.740) | 0.911 |"
    contrastive = "| contrastive | `siamese-train --variant both --image-size 64` | 64 | 8 | 0, 1 | - "
    contrastive += "| 0.835 +- 0.000 (0.835-0.835) | 0.911 |"
    page = (tmp_path / "results" / "training.md").read_text().split("## Seeds")[1]
    assert bce in page and contrastive in page and "--lr 1e-3" not in page
    readme_table = (tmp_path / "README.md").read_text()
    assert bce in readme_table and contrastive not in readme_table  # the README: three seeds or more
    assert "No LFW run at the spec's 128 px is recorded yet." in readme_table  # a proxy is not a result row
