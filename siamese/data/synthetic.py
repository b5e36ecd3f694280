"""A built-in synthetic face set, so that training runs on a machine with no LFW and no network.

Each identity is a deterministic set of facial proportions and colours (face shape, skin,
hair, eye spacing and size, nose, mouth); each of its images varies pose (rotation, shift,
scale), lighting (a directional gradient and brightness) and sensor noise. It is a stand-in
for checking that the pipeline learns, never a substitute for LFW figures: every output of a
run on it is labelled `synthetic`.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from siamese.data.lfw import Dataset, ImageBank, draw_pairs


def _identity_params(g: torch.Generator) -> dict[str, torch.Tensor]:
    def u(lo: float, hi: float, n: int = 1) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g)

    return {
        "face_r": torch.cat([u(0.45, 0.7), u(0.6, 0.85)]),  # (rx, ry)
        "skin": u(0.3, 0.95, 3),
        "hair": u(0.0, 0.8, 3),
        "hair_line": u(-0.75, -0.35),
        "eye_dx": u(0.15, 0.35),
        "eye_y": u(-0.25, -0.02),
        "eye_r": u(0.05, 0.12),
        "iris": u(0.0, 0.7, 3),
        "nose_len": u(0.1, 0.3),
        "mouth_w": u(0.12, 0.35),
        "mouth_y": u(0.3, 0.5),
        "lips": u(0.2, 0.9, 3),
    }


def _soft(inside: torch.Tensor, sharpness: float = 40.0) -> torch.Tensor:
    """A mask from a signed 'inside' field (positive inside), antialiased."""
    return torch.sigmoid(sharpness * inside)


def _render(p: dict[str, torch.Tensor], size: int, g: torch.Generator) -> torch.Tensor:
    """One image of an identity under random pose, lighting and noise: (size, size, 3) uint8."""
    angle = math.radians(15) * (2 * torch.rand(1, generator=g).item() - 1)
    shift = 0.1 * (2 * torch.rand(2, generator=g) - 1)
    scale = 0.9 + 0.2 * torch.rand(1, generator=g).item()
    lin = torch.linspace(-1, 1, size)
    y, x = torch.meshgrid(lin, lin, indexing="ij")
    # inverse pose: image coordinates -> face coordinates
    x, y = x - shift[0], y - shift[1]
    c, s = math.cos(angle), math.sin(angle)
    x, y = (c * x + s * y) / scale, (-s * x + c * y) / scale

    rx, ry = p["face_r"]
    face = _soft(1 - (x / rx) ** 2 - (y / ry) ** 2, 8)
    hair = face * _soft(p["hair_line"] - y, 30) + _soft(
        1 - (x / (rx + 0.08)) ** 2 - ((y + 0.1) / (ry + 0.05)) ** 2, 8
    ) * _soft(-y - 0.2, 20)
    hair = hair.clamp(0, 1)
    eyes = sum(_soft(p["eye_r"] ** 2 - (x - sx * p["eye_dx"]) ** 2 - (y - p["eye_y"]) ** 2, 400) for sx in (-1, 1))
    nose = _soft(0.03 - x.abs(), 80) * _soft(y - p["eye_y"], 40) * _soft(p["eye_y"] + p["nose_len"] - y, 40)
    mouth = _soft(1 - (x / p["mouth_w"]) ** 2 - ((y - p["mouth_y"]) / 0.05) ** 2, 6)

    background = torch.rand(3, generator=g)  # per image, so it never identifies anyone
    img = background.view(3, 1, 1).expand(3, size, size).clone()
    for mask, colour in (
        (face, p["skin"]),
        (hair, p["hair"]),
        (eyes, p["iris"]),
        (nose, p["skin"] * 0.7),
        (mouth * face, p["lips"]),
    ):
        img = img * (1 - mask) + colour.view(3, 1, 1) * mask

    light = (
        0.75
        + 0.5 * torch.rand(1, generator=g)
        + 0.3 * (2 * torch.rand(2, generator=g) - 1) @ torch.stack([x.flatten(), y.flatten()]).view(2, size * size)
    )
    img = img * light.view(1, size, size)
    img = img + (0.02 + 0.06 * torch.rand(1, generator=g)) * torch.randn(3, size, size, generator=g)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0)


def make_synthetic(
    image_size: int = 32,
    n_train_identities: int = 150,
    n_test_identities: int = 60,
    images_per_identity: int = 8,
    n_train_pairs: int = 1000,
    n_test_pairs: int = 600,
    seed: int = 0,
) -> Dataset:
    """A Dataset with disjoint train and test identities, the same for the same arguments."""
    n_ids = n_train_identities + n_test_identities
    keys, images = [], []
    for identity in range(n_ids):
        g = torch.Generator().manual_seed(seed * 1_000_003 + identity)
        params = _identity_params(g)
        for k in range(images_per_identity):
            keys.append(f"synth_{identity:04d}/synth_{identity:04d}_{k + 1:04d}.png")
            images.append(_render(params, image_size, g))
    bank = ImageBank(keys, torch.stack(images))
    rows = [torch.arange(i * images_per_identity, (i + 1) * images_per_identity) for i in range(n_ids)]
    train_ids = {f"synth_{i:04d}": r for i, r in enumerate(rows[:n_train_identities])}
    test_ids = {f"synth_{i:04d}": r for i, r in enumerate(rows[n_train_identities:], n_train_identities)}
    g = torch.Generator().manual_seed(seed)
    info = {
        "data_set": "synthetic",
        "n_train_pairs": n_train_pairs,
        "n_test_pairs": n_test_pairs,
        "n_train_identities": n_train_identities,
        "n_test_identities": n_test_identities,
        "images_per_identity": images_per_identity,
        "seed": seed,
    }
    return Dataset(
        "synthetic",
        bank,
        draw_pairs(train_ids, n_train_pairs, g),
        draw_pairs(test_ids, n_test_pairs, g),
        train_ids,
        info,
    )


def write_synthetic_pairs(dest: Path, n_pairs: int = 100, image_size: int = 32, seed: int = 0) -> Path:
    """Every image of the synthetic set's test people as PNG files under `dest` (one folder per
    person, as LFW), and `n_pairs` distinct test pairs, same and different alternating, as an assignment-format
    `dest/pairs.txt`: faces of people no synthetic training run has seen. Returns the list's path."""
    from PIL import Image

    from siamese.core.files import check_writable, write_text

    dataset = make_synthetic(image_size=image_size, seed=seed)
    check_writable(dest)
    test_rows = {int(r) for r in torch.cat([dataset.test.a, dataset.test.b])}
    for row in sorted(test_rows):
        path = Path(dest) / dataset.bank.keys[row]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(dataset.bank.images[row].numpy()).save(path)
    by_label: dict[bool, list[str]] = {True: [], False: []}  # the test list holds its same pairs first
    seen = set()
    for a, b, same in zip(dataset.test.a.tolist(), dataset.test.b.tolist(), dataset.test.same.tolist(), strict=True):
        if frozenset((a, b)) not in seen:
            seen.add(frozenset((a, b)))
            by_label[bool(same)].append(f"{dataset.bank.keys[a]} {dataset.bank.keys[b]} {int(same)}")
    alternating = [line for pair in zip(by_label[True], by_label[False], strict=False) for line in pair]
    lines = alternating[:n_pairs]  # as many same pairs as different ones
    write_text(Path(dest) / "pairs.txt", "\n".join(lines) + "\n")
    return Path(dest) / "pairs.txt"
