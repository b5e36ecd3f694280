"""How much does one recipe's result move with its seed? The same `siamese-train` command run once
per seed, and the mean and spread of what each run reports (docs/training.md, "Seeds").

`python -m bench.studies.seeds --variant bce --seeds 0,1,2 --out runs-seeds --json seeds.json --
--image-size 64 --epochs 2` trains `siamese-train --variant bce --image-size 64 --epochs 2 --seed S
--out runs-seeds/seed-S` for each seed, one process each; a seed whose run folder already holds a
summary is read, not trained again, so an interrupted study continues where it stopped.

Validation figures are what recipes are chosen on; the test figures are each run's one look at
the test pairs, reported for the spread, never to choose. Recording each seed's summary with
`python -m bench.pages add` puts the spread in the results pages.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click

from bench.pages import format_spread, recipe_key, spread
from siamese.artifacts.records import TrainingSummary
from siamese.core.files import write_json
from siamese.core.spec import VARIANTS

# what each run's summary.json reports, as the table shows it
FIGURES = {"val_accuracy": "val accuracy", "val_auc": "val AUC", "accuracy": "test accuracy", "auc": "test AUC"}
STUDY_OPTIONS = ("--seed", "--out", "--variant", "--resume")  # the study's to set, per seed


def summary_of(seed_dir: Path) -> TrainingSummary | None:
    found = sorted(seed_dir.glob("*/*/summary.json"))
    if len(found) > 1:
        raise click.ClickException(f"{seed_dir} holds {len(found)} runs; give each study its own --out")
    return TrainingSummary.from_dict(json.loads(found[0].read_text()), str(found[0])) if found else None


def train(variant: str, seed: int, seed_dir: Path, train_args: tuple[str, ...]) -> TrainingSummary:
    """One seed's run; a run stopped before its summary is resumed, not refused or redone."""
    command = ["siamese-train", "--variant", variant, *train_args, "--seed", str(seed), "--out", str(seed_dir)]
    if any(seed_dir.glob("*/*/checkpoint.pt")):
        command.append("--resume")
    click.echo(f"seed {seed}: {' '.join(command)}")
    subprocess.run([sys.executable, "-m", "siamese.cli.train", *command[1:]], check=True)
    return summary_of(seed_dir)


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--variant", type=click.Choice(VARIANTS), required=True)
@click.option("--seeds", default="0,1,2", help="comma-separated, at least two")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="one run folder per seed under it")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None)
@click.argument("train_args", nargs=-1, type=click.UNPROCESSED)
def main(variant, seeds, out, json_out, train_args):
    """Train one recipe once per seed (siamese-train's options after --) and report the spread."""
    seed_list = sorted({int(s) for s in seeds.split(",")})
    if len(seed_list) < 2:
        raise click.ClickException(f"--seeds {seeds}: a spread needs at least two different seeds")
    for arg in train_args:
        if arg.split("=")[0] in STUDY_OPTIONS:
            raise click.ClickException(f"{arg}: {arg.split('=')[0]} is the study's to set, not a training option here")
    summaries = {}
    for seed in seed_list:
        seed_dir = out / f"seed-{seed}"
        summary = summary_of(seed_dir)
        if summary is None:
            summary = train(variant, seed, seed_dir, train_args)
        else:
            click.echo(f"seed {seed}: read the finished run in {seed_dir}")
        summaries[seed] = summary
    if len({recipe_key(s) for s in summaries.values()}) > 1:
        commands = sorted({s.command or "-" for s in summaries.values()})
        raise click.ClickException(f"the seeds' runs differ in more than their seed: {commands}")
    report = {
        "variant": variant,
        "commands": [s.command for s in summaries.values()],
        "seeds": seed_list,
        "runs": {
            seed: {key: getattr(s, key) for key in FIGURES} | {"host": s.host, "commit": s.git_commit}
            for seed, s in summaries.items()
        },
        **{key: spread([getattr(s, key) for s in summaries.values()]) for key in FIGURES},
    }
    click.echo(f"{variant}, seeds {', '.join(map(str, seed_list))}:")
    for key, name in FIGURES.items():
        figure = format_spread([getattr(s, key) for s in summaries.values()])
        click.echo(f"  {name}: {'not reported by every run' if report[key] is None else figure}")
    if json_out:
        write_json(json_out, report)


if __name__ == "__main__":
    main()
