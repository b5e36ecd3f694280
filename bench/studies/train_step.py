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
"""

from __future__ import annotations

import copy
import time

import click
import torch

from siamese.core.model import SiameseNet, all_pairs_loss
from siamese.data.lfw import IdentityBatch
from siamese.training.config import TrainConfig
from siamese.training.loop import training_embedding

MODES = ("fp32", "bf16", "channels-last", "compile", "bf16-compile")


def make_step(model: SiameseNet, mode: str):
    """One training step for `mode`: (images, batch) -> the loss, with its own AdamW."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    embed = model.embed
    if mode == "channels-last":
        model.to(memory_format=torch.channels_last)
    if mode in ("compile", "bf16-compile"):
        embed = training_embedding(model, TrainConfig(compile="on"), torch.device("cpu"))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode in ("bf16", "bf16-compile"))

    def step(images: torch.Tensor, batch: IdentityBatch) -> float:
        if mode == "channels-last":
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast:
            features = embed(images)
        loss = all_pairs_loss(model, features.float(), batch.identity, "hard")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def time_mode(base: SiameseNet, mode: str, images, batch: IdentityBatch, steps: int) -> dict:
    model = copy.deepcopy(base).train()
    step = make_step(model, mode)
    sizes = [n for n in (len(images), len(images) - 6, len(images) - 12) if n >= 4]
    start = time.perf_counter()
    first_loss = step(images, batch)  # includes compilation for `compile`
    for n in sizes[1:]:  # and the recompile to a dynamic batch size
        step(images[:n], IdentityBatch(batch.rows[:n], batch.identity[:n]))
    first_s = time.perf_counter() - start
    timed = [sizes[i % len(sizes)] for i in range(steps)]
    start = time.perf_counter()
    for n in timed:
        step(images[:n], IdentityBatch(batch.rows[:n], batch.identity[:n]))
    elapsed = time.perf_counter() - start
    return {
        "mode": mode,
        "first_loss": first_loss,
        "first_step_s": first_s,
        "step_s": elapsed / steps,
        "images_per_s": sum(timed) / elapsed,
        "pairs_per_s": sum(n * (n - 1) / 2 for n in timed) / elapsed,
    }


@click.command()
@click.option("--image-size", type=click.IntRange(min=8), default=128)
@click.option("--identities", "per_batch", type=click.IntRange(min=2), default=24, help="P identities per batch")
@click.option("--images-per-identity", "per_identity", type=click.IntRange(min=2), default=4, help="K")
@click.option("--steps", type=click.IntRange(min=1), default=3, help="timed steps per mode (after one untimed)")
@click.option("--modes", default=",".join(MODES), help=f"comma-separated subset of {', '.join(MODES)}")
def main(image_size: int, per_batch: int, per_identity: int, steps: int, modes: str) -> None:
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
        f"training step: {per_batch} x {per_identity} images of {image_size}px, {torch.get_num_threads()} threads"
    )
    reference = None
    for mode in chosen:  # each line as soon as it is measured: compile and bf16 can take minutes
        r = time_mode(base, mode, images, batch, steps)
        reference = reference or r
        loss_change = abs(r["first_loss"] - reference["first_loss"]) / abs(reference["first_loss"])
        click.echo(
            f"  {r['mode']:14s} {r['images_per_s']:7.1f} images/s {r['pairs_per_s']:8.0f} pairs/s "
            f"({r['images_per_s'] / reference['images_per_s']:.2f}x {reference['mode']})  "
            f"first steps {r['first_step_s']:.1f} s, "
            f"loss {r['first_loss']:.4f} ({loss_change:.1e} from {reference['mode']})"
        )


if __name__ == "__main__":
    main()
