"""Does one trained model beat another? Both scored on the same pairs, each at its own
threshold, and McNemar's test on the pairs where exactly one of them is right: the paired test
a claim that one recipe beats another carries (docs/training.md).

`python -m bench.studies.paired --a RUN_A/checkpoint.pt --b RUN_B/checkpoint.pt --json paired.json`
scores both on run A's validation pairs (rebuilt from its recorded recipe; run B must have held
out the same people), where recipes are chosen; `--pairs FILE` scores a pair file instead (the
test pairs: once per final recipe).
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from bench.pages import wilson_interval
from bench.studies.framing_gap import validation_pairs
from siamese.artifacts.checkpoint import load_checkpoint
from siamese.core.files import write_json
from siamese.core.metrics import decide
from siamese.core.pairs import read_pairs
from siamese.data.lfw import find_lfw, locate_lfw
from siamese.parity.compare import mcnemar_p
from siamese.tasks.evaluate import Scored, score_checkpoint


def right(scored: Scored) -> np.ndarray:
    return decide(scored.scores, scored.threshold, scored.higher_is_same) == scored.same


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    """Each model's accuracy with its 95% interval, the discordant pairs and McNemar's p."""
    only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
    figures = {}
    for name, correct in (("a", a), ("b", b)):
        accuracy = float(correct.mean())
        figures[name] = {"accuracy": accuracy, "ci95": list(wilson_interval(accuracy, len(correct)))}
    return {**figures, "pairs": len(a), "only_a_right": only_a, "only_b_right": only_b,
            "p_value": mcnemar_p(only_a, only_b)}  # fmt: skip


@click.command()
@click.option("--a", "run_a", type=click.Path(path_type=Path, exists=True, dir_okay=False), required=True)
@click.option("--b", "run_b", type=click.Path(path_type=Path, exists=True, dir_okay=False), required=True)
@click.option("--pairs", "pairs_file", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None)
@click.option("--lfw", "lfw_dir", type=click.Path(path_type=Path, exists=True), default=None)
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None)
def main(run_a, run_b, pairs_file, lfw_dir, json_out):
    if pairs_file is None:
        held_out = [load_checkpoint(run).data.get("validation") for run in (run_a, run_b)]
        if held_out[0] != held_out[1]:
            raise click.ClickException(
                f"the runs held out different validation people: {held_out[0]!r}, {held_out[1]!r}"
            )
        pairs, image_root = validation_pairs(run_a, lfw_dir, None)
        where = f"run A's validation pairs ({held_out[0]})"
    else:
        pairs, image_root = read_pairs(pairs_file), locate_lfw(lfw_dir or find_lfw()).image_root
        where = str(pairs_file)
    seen_allowed = pairs_file is None  # validation people are in each run's recorded people, by design
    a, b = (right(score_checkpoint(run, pairs, image_root, allow_seen_people=seen_allowed)) for run in (run_a, run_b))
    report = {**compare(a, b), "run_a": str(run_a), "run_b": str(run_b), "scored_on": where}
    click.echo(
        f"{where}, {report['pairs']} pairs: A {report['a']['accuracy']:.3f}, B {report['b']['accuracy']:.3f}; only A "
        f"right {report['only_a_right']}, only B right {report['only_b_right']}; McNemar p = {report['p_value']:.3g}"
    )
    if json_out:
        write_json(json_out, report)


if __name__ == "__main__":
    main()
