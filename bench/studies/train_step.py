"""The training step's speed on this machine, per way of running it.

`python -m bench.studies.train_step --image-size 128` times one identity-batched contrastive training
step (forward, all-pairs loss, backward, AdamW) of the spec network in each mode:

- fp32: eager, as `siamese-train --amp none --compile off` runs;
- bf16: `--amp bf16`, autocast to bfloat16 (fast only where the CPU has AVX-512 bf16 or AMX,
  which is where `--amp auto`, the default, picks it);
- channels-last: the network and its input in NHWC memory order;
- compile: the embedding network compiled as `siamese-train --compile` compiles it
  (`siamese.training.loop.training_embedding`; compile time reported apart);
- bf16-compile: both, as `siamese-train --amp bf16 --compile on` runs.

Identity batches vary in size (people with fewer than K images), so the timed steps cycle
through batches of P x K, P x K - 6 and P x K - 12 images: a compiled network must handle
them as training does (one recompile, to a dynamic batch dimension).
Every mode starts from the same weights and batch; its first loss is compared with fp32's, so
a mode that is fast because it computes something else shows up. Prints images/s and pairs/s
(pairs inside each P x K batch) per mode, and the ratio to the first mode (fp32 by default).

`--adamw fused|foreach|for-loop` picks torch's AdamW implementation (training uses fused).
`--profile` then splits the timed steps of each mode into their phases (forward, loss,
backward, optimizer), each phase's share of the step, and lists the torch profiler's top
operators by their own CPU time: where a training step's time goes.
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict

import click
import torch

from siamese.core.model import SiameseNet, all_pairs_loss
from siamese.data.lfw import IdentityBatch
from siamese.training.config import TrainConfig
from siamese.training.loop import ADAMW_IMPLEMENTATIONS, make_optimizer, training_embedding

MODES = ("fp32", "bf16", "channels-last", "compile", "bf16-compile")


class Phases:
    """Wall time per phase of the steps run while `enabled`, under the profiler's labels."""

    def __init__(self):
        self.enabled, self.seconds = False, defaultdict(float)

    def __call__(self, name: str):
        return _Phase(self, name)


class _Phase:
    def __init__(self, phases: Phases, name: str):
        self.phases, self.name = phases, name
        self.label = torch.profiler.record_function(name)

    def __enter__(self):
        self.label.__enter__()
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        if self.phases.enabled:
            self.phases.seconds[self.name] += time.perf_counter() - self.start
        self.label.__exit__(*exc)


def make_step(model: SiameseNet, mode: str, adamw: str, phases: Phases):
    """One training step for `mode`: (images, batch) -> the loss, with its own AdamW."""
    optimizer = make_optimizer(model, TrainConfig(lr=1e-4), adamw)
    embed = model.embed
    if mode == "channels-last":
        model.to(memory_format=torch.channels_last)
    if mode in ("compile", "bf16-compile"):
        embed = training_embedding(model, TrainConfig(compile="on"), torch.device("cpu"))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode in ("bf16", "bf16-compile"))

    def step(images: torch.Tensor, batch: IdentityBatch) -> float:
        if mode == "channels-last":
            images = images.contiguous(memory_format=torch.channels_last)
        with phases("forward"), autocast:
            features = embed(images)
        with phases("loss"):
            loss = all_pairs_loss(model, features.float(), batch.identity, "hard")
        with phases("backward"):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with phases("optimizer"):
            optimizer.step()
        return loss.item()

    return step


def time_mode(base: SiameseNet, mode: str, images, batch: IdentityBatch, steps: int, adamw: str, profile: bool) -> dict:
    model = copy.deepcopy(base).train()
    phases = Phases()
    step = make_step(model, mode, adamw, phases)
    sizes = [n for n in (len(images), len(images) - 6, len(images) - 12) if n >= 4]
    start = time.perf_counter()
    first_loss = step(images, batch)  # includes compilation for `compile`
    for n in sizes[1:]:  # and the recompile to a dynamic batch size
        step(images[:n], IdentityBatch(batch.rows[:n], batch.identity[:n]))
    first_s = time.perf_counter() - start
    timed = [sizes[i % len(sizes)] for i in range(steps)]

    def run_timed() -> float:
        start = time.perf_counter()
        for n in timed:
            step(images[:n], IdentityBatch(batch.rows[:n], batch.identity[:n]))
        return time.perf_counter() - start

    elapsed = run_timed()
    result = {
        "mode": mode,
        "first_loss": first_loss,
        "first_step_s": first_s,
        "step_s": elapsed / steps,
        "images_per_s": sum(timed) / elapsed,
        "pairs_per_s": sum(n * (n - 1) / 2 for n in timed) / elapsed,
    }
    if profile:  # a second pass: the profiler's own cost stays out of the figures above
        phases.enabled = True
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            profiled_s = run_timed()
        result["phases"] = {name: seconds / profiled_s for name, seconds in phases.seconds.items()}
        own = [e for e in prof.key_averages() if e.key not in phases.seconds]
        total = sum(e.self_cpu_time_total for e in own) or 1.0
        top = sorted(own, key=lambda e: e.self_cpu_time_total, reverse=True)[:TOP_OPERATORS]
        result["top"] = [(e.key, e.self_cpu_time_total / total, e.count // steps) for e in top]
    return result


TOP_OPERATORS = 12


def describe_profile(r: dict) -> list[str]:
    phases = ", ".join(f"{name} {share:.0%}" for name, share in r["phases"].items())
    lines = [
        f"    phases of the step: {phases}",
        "    top operators by own CPU time (share of all ops; calls per step):",
    ]
    lines += [f"      {share:6.1%}  {key} ({calls})" for key, share, calls in r["top"]]
    return lines


@click.command()
@click.option("--image-size", type=click.IntRange(min=8), default=128)
@click.option("--identities", "per_batch", type=click.IntRange(min=2), default=24, help="P identities per batch")
@click.option("--images-per-identity", "per_identity", type=click.IntRange(min=2), default=4, help="K")
@click.option("--steps", type=click.IntRange(min=1), default=3, help="timed steps per mode (after one untimed)")
@click.option("--modes", default=",".join(MODES), help=f"comma-separated subset of {', '.join(MODES)}")
@click.option("--adamw", type=click.Choice(list(ADAMW_IMPLEMENTATIONS)), default="fused", help="AdamW implementation")
@click.option("--profile", is_flag=True, help="then each mode's phases and top operators (torch profiler)")
def main(image_size: int, per_batch: int, per_identity: int, steps: int, modes: str, adamw: str, profile: bool) -> None:
    chosen = [m.strip() for m in modes.split(",") if m.strip()]
    unknown = sorted(set(chosen) - set(MODES))
    if unknown or not chosen:
        raise click.BadParameter(f"unknown mode(s) {unknown}; choose from {', '.join(MODES)}", param_hint="--modes")
    torch.manual_seed(0)
    base = SiameseNet("contrastive", image_size, margin=90.0)
    n = per_batch * per_identity
    images = torch.randn(n, 3, image_size, image_size)
    batch = IdentityBatch(torch.arange(n), torch.arange(per_batch).repeat_interleave(per_identity))
    click.echo(
        f"training step: {per_batch} x {per_identity} images of {image_size}px, {adamw} AdamW, "
        f"{torch.get_num_threads()} threads"
    )
    reference = None
    for mode in chosen:  # each line as soon as it is measured: compile and bf16 can take minutes
        r = time_mode(base, mode, images, batch, steps, adamw, profile)
        reference = reference or r
        loss_change = abs(r["first_loss"] - reference["first_loss"]) / abs(reference["first_loss"])
        click.echo(
            f"  {r['mode']:14s} {r['images_per_s']:7.1f} images/s {r['pairs_per_s']:8.0f} pairs/s "
            f"({r['images_per_s'] / reference['images_per_s']:.2f}x {reference['mode']})  "
            f"first steps {r['first_step_s']:.1f} s, "
            f"loss {r['first_loss']:.4f} ({loss_change:.1e} from {reference['mode']})"
        )
        if profile:
            click.echo("\n".join(describe_profile(r)))


if __name__ == "__main__":
    main()
