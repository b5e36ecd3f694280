"""Real LFW: a few hundred pairs from ../shared/data/lfw; a short run must lower the loss."""

import torch

from siamese.core.model import SiameseNet
from siamese.data.lfw import load_lfw
from siamese.tasks.evaluate import predict
from siamese.training.config import TrainConfig
from siamese.training.loop import train_one_epoch


def test_short_training_on_real_lfw_lowers_the_loss(lfw_dir, cache_dir):
    ds = load_lfw(lfw_dir, 32, cache_dir=cache_dir, limit=300)
    assert ds.info["n_train_pairs"] == 300 and len(ds.test) == 300
    assert not set(ds.train_identities) & {ds.bank.keys[i].split("/")[0] for i in ds.test.a.tolist()}
    torch.manual_seed(0)
    cfg = TrainConfig(variant="contrastive", pairs_per_epoch=0, augment=False, batch_size=32, lr=3e-4)
    model = SiameseNet("contrastive", 32)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(0)
    losses = [train_one_epoch(model, opt, ds, cfg, torch.device("cpu"), g, e)["train_loss"] for e in range(1, 5)]
    assert losses[-1] < 0.7 * losses[0], losses
    scores = predict(model, ds.bank, ds.test, torch.device("cpu"))
    assert scores.shape == (300,) and (scores >= 0).all()
