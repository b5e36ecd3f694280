import torch

from siamese.data.augment import AugmentConfig, augment, random_affine


def images(n=8, size=32):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_probability_zero_is_the_identity():
    x = images()
    assert torch.equal(augment(x, AugmentConfig(p=0.0), torch.Generator().manual_seed(0)), x)


def test_shape_dtype_range_and_determinism():
    x = images()
    cfg = AugmentConfig(p=1.0)
    y1 = augment(x, cfg, torch.Generator().manual_seed(3))
    y2 = augment(x, cfg, torch.Generator().manual_seed(3))
    assert y1.shape == x.shape and y1.dtype == x.dtype
    assert torch.equal(y1, y2)
    assert y1.min() >= 0 and y1.max() <= 1


def test_about_seventy_percent_of_images_are_transformed():
    _, warped = random_affine(20000, 32, AugmentConfig(), torch.Generator().manual_seed(0))
    # p = 0.7 and then at least one of four coin flips: 0.7 * (1 - 1/16)
    assert abs(warped.float().mean().item() - 0.7 * 15 / 16) < 0.02


def test_parameters_stay_within_the_assignment_ranges():
    theta, _ = random_affine(5000, 32, AugmentConfig(p=1.0), torch.Generator().manual_seed(0))
    linear = theta[:, :, :2]
    scale = 1 / linear.det().abs().sqrt()  # |det| = 1 / s^2 for rotation, mirror and scale
    assert scale.min() >= 0.7 - 1e-5 and scale.max() <= 1.3 + 1e-5
    # translation of at most 10 px in each direction after undoing rotation and scale
    shift = -torch.linalg.solve(linear, theta[:, :, 2:]).squeeze(2) * 32 / 2
    assert shift.abs().max() <= 10 + 1e-3
    mirrored = linear.det() < 0
    assert 0.4 < mirrored.float().mean() < 0.6


def test_mirror_only_flips_horizontally():
    x = images(1)
    cfg = AugmentConfig(p=1.0)
    g = torch.Generator().manual_seed(0)
    for seed in range(200):  # find a draw that only mirrors
        g.manual_seed(seed)
        theta, _ = random_affine(1, 32, cfg, g)
        if torch.allclose(theta, torch.tensor([[[-1.0, 0, 0], [0, 1.0, 0]]])):
            g.manual_seed(seed)
            assert torch.allclose(augment(x, cfg, g), x.flip(3), atol=1e-5)
            return
    raise AssertionError("no mirror-only draw found")


def test_each_image_of_a_batch_gets_its_own_transform():
    x = images(1).expand(16, -1, -1, -1).contiguous()
    y = augment(x, AugmentConfig(p=1.0), torch.Generator().manual_seed(5))
    distinct = {tuple(img.flatten()[:50].tolist()) for img in y}
    assert len(distinct) > 8
