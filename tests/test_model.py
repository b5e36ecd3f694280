import pytest
import torch
import torch.nn.functional as F
from torch import nn

from siamese.core.model import (
    FEATURE_DIM,
    EmbeddingNet,
    SiameseNet,
    all_pairs_loss,
    contrastive_loss,
    count_parameters,
    pair_distance,
    pair_loss,
)

SPEC_LAYERS = [
    (nn.Conv2d, (64, 128, 128)),
    (nn.ReLU, (64, 128, 128)),
    (nn.BatchNorm2d, (64, 128, 128)),
    (nn.MaxPool2d, (64, 64, 64)),
    (nn.Conv2d, (128, 64, 64)),
    (nn.ReLU, (128, 64, 64)),
    (nn.BatchNorm2d, (128, 64, 64)),
    (nn.MaxPool2d, (128, 32, 32)),
    (nn.Conv2d, (256, 32, 32)),
    (nn.ReLU, (256, 32, 32)),
    (nn.BatchNorm2d, (256, 32, 32)),
    (nn.MaxPool2d, (256, 16, 16)),
    (nn.Conv2d, (512, 16, 16)),
    (nn.ReLU, (512, 16, 16)),
    (nn.BatchNorm2d, (512, 16, 16)),
    (nn.Flatten, (131072,)),
    (nn.Linear, (1024,)),
    (nn.ReLU, (1024,)),
    (nn.BatchNorm1d, (1024,)),
]


def conv_params(cin, cout, k):
    return cin * cout * k * k + cout


@pytest.fixture(scope="module")
def full_net():
    return EmbeddingNet(128).eval()


def test_embedding_net_is_the_19_spec_layers_with_their_shapes(full_net):
    assert len(full_net) == 19
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        for layer, (kind, shape) in zip(full_net, SPEC_LAYERS, strict=True):
            x = layer(x)
            assert type(layer) is kind
            assert tuple(x.shape[1:]) == shape, layer
    convs = [m for m in full_net if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size, c.stride, c.padding) for c in convs] == [
        ((5, 5), (1, 1), (2, 2)),
        ((5, 5), (1, 1), (2, 2)),
        ((3, 3), (1, 1), (1, 1)),
        ((3, 3), (1, 1), (1, 1)),
    ]


def test_parameter_count_of_the_spec_network(full_net):
    expected = (
        conv_params(3, 64, 5)
        + 2 * 64
        + conv_params(64, 128, 5)
        + 2 * 128
        + conv_params(128, 256, 3)
        + 2 * 256
        + conv_params(256, 512, 3)
        + 2 * 512
        + 131072 * 1024
        + 1024
        + 2 * 1024
    )
    assert count_parameters(full_net) == expected
    assert round(expected / 1e6, 1) == 135.9
    assert count_parameters(SiameseNet("bce", 128)) == expected + 2048 + 1
    assert count_parameters(SiameseNet("contrastive", 128)) == expected


@pytest.mark.parametrize("size", [16, 32, 48])
def test_small_image_sizes_follow_the_flatten_size(size):
    net = EmbeddingNet(size)
    assert net[16].in_features == 512 * (size // 8) ** 2
    assert net(torch.rand(3, 3, size, size)).shape == (3, 1024)


@pytest.mark.parametrize("variant", ["bce", "contrastive"])
def test_siamese_shares_one_embedding_and_returns_one_value_per_pair(variant):
    model = SiameseNet(variant, 16)
    assert sum(isinstance(m, EmbeddingNet) for m in model.modules()) == 1
    a, b = torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16)
    out = model(a, b)
    assert out.shape == (4,)
    score = model.score(out)
    if variant == "bce":
        assert ((score > 0) & (score < 1)).all()
    else:
        assert (score >= 0).all()


def test_rejects_bad_config():
    with pytest.raises(ValueError, match="unknown variant"):
        SiameseNet("triplet", 16)
    with pytest.raises(ValueError, match="multiple of 8"):
        SiameseNet("bce", 20)


def test_contrastive_loss_matches_hand_computed_values():
    d = torch.tensor([0.5, 0.3, 2.0, 0.0])
    y = torch.tensor([1, 0, 0, 1])
    # same: 0.25; different inside margin: (1-0.3)^2 = 0.49; outside margin: 0; same at 0: 0
    assert contrastive_loss(d, y, margin=1.0).item() == pytest.approx((0.25 + 0.49 + 0 + 0) / 4)
    assert contrastive_loss(d, y, margin=2.5).item() == pytest.approx((0.25 + 2.2**2 + 0.5**2 + 0) / 4)


def test_distance_has_finite_gradient_when_features_are_equal():
    f = torch.randn(3, 8, requires_grad=True)
    d = pair_distance(f, f.detach().clone())
    d.sum().backward()
    assert torch.isfinite(f.grad).all()
    assert d.max().item() < 1e-5
    f1, f2 = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 4.0]])
    assert pair_distance(f1, f2).item() == pytest.approx(5.0)


def test_bce_loss_is_computed_on_logits():
    model = SiameseNet("bce", 16)
    raw = torch.tensor([0.0, 100.0, -100.0])
    y = torch.tensor([1, 1, 0])
    expected = torch.log(torch.tensor(2.0)).item() / 3  # the two saturated terms are ~0
    assert pair_loss(model, raw, y).item() == pytest.approx(expected, rel=1e-4)


def test_flop_count_of_the_spec_network():
    from siamese.core.model import flops_per_image

    assert round(flops_per_image(128) / 1e9, 2) == 3.31


def test_bce_head_on_concatenated_features_is_additively_separable():
    """Documents a property of the spec's bce variant (see README, Results): in eval mode its
    logit is g(a) + h(b), so logit(a1,b1) + logit(a2,b2) == logit(a1,b2) + logit(a2,b1) and
    it cannot tell whether a and b match, only how "same-pair-like" each image is alone."""
    model = SiameseNet("bce", 16).eval()
    a1, a2, b1, b2 = (torch.rand(1, 3, 16, 16) for _ in range(4))
    with torch.no_grad():
        lhs = model(a1, b1) + model(a2, b2)
        rhs = model(a1, b2) + model(a2, b1)
    assert torch.allclose(lhs, rhs, atol=1e-5)


def test_diff_prod_head_compares_the_two_faces():
    """The second bce head: same parameter count, symmetric in a and b, and not a sum of
    one term per image, so it can tell whether the two faces match."""
    torch.manual_seed(0)
    spec, compared = SiameseNet("bce", 16, head="concat"), SiameseNet("bce", 16, head="diff-prod")
    assert count_parameters(spec) == count_parameters(compared)
    compared.load_state_dict(spec.state_dict())  # the same weights: only how they are applied differs
    compared.eval()
    a1, a2, b1, b2 = (torch.randn(1, 3, 16, 16) * 3 for _ in range(4))
    with torch.no_grad():
        assert torch.allclose(compared(a1, b1), compared(b1, a1), atol=1e-6)
        lhs = compared(a1, b1) + compared(a2, b2)
        rhs = compared(a1, b2) + compared(a2, b1)
    assert (lhs - rhs).abs().item() > 1e-4  # the spec head's identity holds to 1e-6
    assert compared.config.name == "bce-diff-prod" and spec.config.name == "bce"


def test_heads_belong_to_bce_only():
    from siamese.core.model import ModelConfig

    with pytest.raises(ValueError, match="bce head"):
        ModelConfig("contrastive", 16, head="diff-prod")
    with pytest.raises(ValueError, match="unknown head"):
        ModelConfig("bce", 16, head="sum")
    assert ModelConfig(**{"variant": "bce", "image_size": 16, "margin": 1.0}).head == "concat"  # older checkpoints


def test_all_pairs_loss_weighs_same_and_different_pairs_equally():
    model = SiameseNet("contrastive", 8, margin=3.0)
    features = torch.tensor([[0.0, 0], [1, 0], [0, 2], [4, 0]])
    identity = torch.tensor([0, 0, 1, 2])
    # same: (0,1) D=1 -> 1. different: (0,2) D=2 -> 1, (0,3) 4 -> 0, (1,2) sqrt5 -> (3-sqrt5)^2,
    # (1,3) 3 -> 0, (2,3) sqrt20 -> 0
    different = [1.0, 0.0, (3 - 5**0.5) ** 2, 0.0, 0.0]
    expected = 0.5 * 1.0 + 0.5 * sum(different) / 5
    assert all_pairs_loss(model, features, identity).item() == pytest.approx(expected, rel=1e-5)
    # hard negatives: as many as same pairs (one), the most alike = the closest, (0,2)
    assert all_pairs_loss(model, features, identity, "hard").item() == pytest.approx(0.5 * 1 + 0.5 * 1, rel=1e-5)
    # no same pair in the batch: the six different pairs alone, (0,1) now one of them: (3 - 1)^2
    alone = all_pairs_loss(model, features, torch.arange(4))
    assert alone.item() == pytest.approx((4 + 1 + (3 - 5**0.5) ** 2) / 6, rel=1e-5)


def test_all_pairs_loss_hard_negatives_of_bce_are_the_highest_logits():
    model = SiameseNet("bce", 8, head="diff-prod")
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.weight[0, FEATURE_DIM] = 1.0  # logit = f1[0] * f2[0]
        model.head.bias.zero_()
    features = torch.zeros(4, FEATURE_DIM)
    features[:, 0] = torch.tensor([1.0, 1.0, 3.0, -2.0])
    identity = torch.tensor([0, 0, 1, 2])
    # logits: same (0,1) 1; different (0,2) 3, (0,3) -2, (1,2) 3, (1,3) -2, (2,3) -6; the hardest is 3
    expected = 0.5 * F.softplus(torch.tensor(-1.0)) + 0.5 * F.softplus(torch.tensor(3.0))
    assert all_pairs_loss(model, features, identity, "hard").item() == pytest.approx(expected.item(), rel=1e-5)
