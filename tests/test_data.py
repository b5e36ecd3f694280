import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from siamese.core.errors import SiameseError
from siamese.data.lfw import ImageBank, draw_pairs, extract_archive, identity_batches, load_lfw, locate_lfw
from siamese.data.synthetic import make_synthetic


def jpeg_bytes(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), colour).save(buf, format="JPEG")
    return buf.getvalue()


def make_lfw(folder: Path, people=("Ann", "Bob", "Cid", "Dee"), per_person=3, archive=False) -> Path:
    """A tiny LFW look-alike: images per person and View 1 pair files, Ann/Bob train, Cid/Dee test."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        f"lfw-tiny/{p}/{p}_{k:04d}.jpg": jpeg_bytes((40 * i, 30 * k, 90))
        for i, p in enumerate(people)
        for k in range(1, per_person + 1)
    }
    if archive:
        with tarfile.open(folder / "lfw-tiny.tgz", "w:gz") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    else:
        for name, data in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
    (folder / "pairsDevTrain.txt").write_text("1\nAnn\t1\t2\nAnn\t1\tBob\t1\n")
    (folder / "pairsDevTest.txt").write_text("1\nCid\t1\t3\nCid\t2\tDee\t2\n")
    return folder


@pytest.mark.parametrize("archive", [False, True], ids=["folder", "tgz"])
def test_load_from_folder_or_archive(tmp_path, archive):
    data = make_lfw(tmp_path / "lfw", archive=archive)
    ds = load_lfw(data, 16, cache_dir=tmp_path / "cache")
    assert ds.bank.images.shape[1:] == (16, 16, 3) and ds.bank.images.dtype == torch.uint8
    assert len(ds.train) == 2 and len(ds.test) == 2
    # every image of the training identities, none of the test identities
    assert set(ds.train_identities) == {"Ann", "Bob"}
    assert sum(len(v) for v in ds.train_identities.values()) == 6
    assert ds.bank.keys[ds.test.a[0]] == "Cid/Cid_0001.jpg"


def test_archive_is_extracted_once(tmp_path):
    data = make_lfw(tmp_path / "lfw", archive=True)
    root = extract_archive(data / "lfw-tiny.tgz", tmp_path / "cache")
    marker = root / "Ann" / "marker"
    marker.write_text("x")
    assert extract_archive(data / "lfw-tiny.tgz", tmp_path / "cache") == root
    assert marker.exists()
    assert locate_lfw(data / "lfw-tiny.tgz", tmp_path / "cache").image_root == root


def test_archive_members_escaping_the_cache_are_refused(tmp_path):
    evil = tmp_path / "lfw-evil.tgz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../../escaped.jpg")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(SiameseError, match="cannot extract"):
        extract_archive(evil, tmp_path / "cache")
    assert not (tmp_path / "escaped.jpg").exists()
    assert not any((tmp_path / "cache" / "extracted").glob("lfw-evil*"))


def test_corrupt_archive_leaves_no_partial_cache(tmp_path):
    bad = tmp_path / "lfw-bad.tgz"
    bad.write_bytes(b"\x1f\x8b\x08 definitely not gzip")
    with pytest.raises(SiameseError, match="cannot extract"):
        extract_archive(bad, tmp_path / "cache")
    assert list((tmp_path / "cache" / "extracted").iterdir()) == []


def test_shared_identities_between_train_and_test_are_refused(tmp_path):
    data = make_lfw(tmp_path / "lfw")
    (data / "pairsDevTest.txt").write_text("1\nAnn\t1\t3\nCid\t2\tDee\t2\n")
    with pytest.raises(SiameseError, match="share 1 identities .*Ann"):
        load_lfw(data, 16, cache_dir=tmp_path / "cache")


def test_missing_image_names_the_file(tmp_path):
    data = make_lfw(tmp_path / "lfw")
    (data / "lfw-tiny" / "Cid" / "Cid_0003.jpg").unlink()
    with pytest.raises(SiameseError, match="image not found: .*Cid_0003.jpg"):
        load_lfw(data, 16, cache_dir=tmp_path / "cache")


def test_data_path_errors(tmp_path):
    with pytest.raises(SiameseError, match="data path not found"):
        locate_lfw(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SiameseError, match="no LFW images found"):
        locate_lfw(tmp_path / "empty")


def test_drawn_pairs_are_balanced_and_labelled_correctly():
    by_identity = {f"p{i}": torch.arange(i * 4, i * 4 + 4) for i in range(10)}
    by_identity["single"] = torch.tensor([40])
    pairs = draw_pairs(by_identity, 1000, torch.Generator().manual_seed(0))
    owner = torch.cat([torch.full((len(v),), i) for i, v in enumerate(by_identity.values())])
    same_identity = owner[pairs.a] == owner[pairs.b]
    assert torch.equal(same_identity.long(), pairs.same)
    assert pairs.same.sum() == 500
    assert (pairs.a[pairs.same == 1] != pairs.b[pairs.same == 1]).all()


def test_synthetic_set_is_deterministic_with_disjoint_identities():
    small = dict(
        image_size=16,
        n_train_identities=6,
        n_test_identities=4,
        images_per_identity=3,
        n_train_pairs=20,
        n_test_pairs=10,
    )
    a, b = make_synthetic(**small), make_synthetic(**small)
    assert torch.equal(a.bank.images, b.bank.images) and torch.equal(a.test.a, b.test.a)
    train_rows = set(torch.cat([a.train.a, a.train.b]).tolist())
    test_rows = set(torch.cat([a.test.a, a.test.b]).tolist())
    assert train_rows <= set(range(18)) and test_rows <= set(range(18, 30))


def test_image_bank_decodes_each_key_once(tmp_path):
    data = make_lfw(tmp_path / "lfw")
    root = data / "lfw-tiny"
    bank = ImageBank.decode(root, ["Ann/Ann_0001.jpg", "Ann/Ann_0001.jpg", "Bob/Bob_0002.jpg"], 8)
    assert bank.images.shape == (2, 8, 8, 3)
    assert bank.indices(["Bob/Bob_0002.jpg", "Ann/Ann_0001.jpg"]).tolist() == [1, 0]


def test_validation_holds_out_people_not_images():
    ds = make_synthetic(image_size=16, n_train_identities=40, n_test_identities=10, n_train_pairs=300, seed=1)
    split = ds.split_validation(0.25, 200, seed=0)
    held = set(ds.train_identities) - set(split.train_identities)
    assert len(held) == 10 and len(split.train_identities) == 30
    held_rows = torch.cat([ds.train_identities[p] for p in held])
    kept_rows = torch.cat(list(split.train_identities.values()))
    assert torch.isin(split.val.a, held_rows).all() and torch.isin(split.val.b, held_rows).all()
    assert not torch.isin(split.train.a, held_rows).any() and not torch.isin(split.train.b, held_rows).any()
    assert torch.isin(split.train.a, kept_rows).all() and len(split.train) < len(ds.train)
    assert len(split.val) == 200 and int(split.val.same.sum()) == 100
    drawn = split.draw_pairs(500, torch.Generator().manual_seed(0))
    assert not torch.isin(torch.cat([drawn.a, drawn.b]), held_rows).any()
    with pytest.raises(SiameseError, match="too few people"):
        ds.split_validation(0.01, 10)


def test_identity_batches_cover_every_image_once_in_groups_of_one_person():
    sizes = {"solo": 1, "pair": 2, "five": 5, "many": 13, "other": 1, "trio": 3}
    by_identity, start = {}, 0
    for name, n in sizes.items():
        by_identity[name] = torch.arange(start, start + n)
        start += n
    owner = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes.values())])
    batches = identity_batches(by_identity, per_batch=3, per_identity=4, generator=torch.Generator().manual_seed(1))
    rows = torch.cat([b.rows for b in batches])
    assert sorted(rows.tolist()) == list(range(start))  # every image exactly once
    for batch in batches:
        assert torch.equal(owner[batch.rows], batch.identity)  # labels are the true people
        assert len(batch.rows) <= 3 * (4 + 1)  # P groups of at most K (+ a merged leftover)
    for name in ("pair", "five", "many", "trio"):  # a person with several images never comes alone
        counts = [(b.identity == list(sizes).index(name)).sum().item() for b in batches]
        assert min(c for c in counts if c) >= 2


def test_identity_batches_refuse_groups_too_small_to_pair():
    with pytest.raises(SiameseError, match="K >= 2"):
        identity_batches({"a": torch.arange(3)}, per_batch=4, per_identity=1, generator=torch.Generator())


def test_siamese_data_synthetic_writes_as_many_same_as_different_pairs_of_unseen_people(tmp_path):
    from siamese.data.synthetic import write_synthetic_pairs

    pairs = write_synthetic_pairs(tmp_path / "faces", n_pairs=50, image_size=16)
    rows = [line.split() for line in pairs.read_text().splitlines()]
    assert len(rows) == 50 and [r[2] for r in rows].count("1") == 25  # an accuracy on them means something
    assert len({frozenset(r[:2]) for r in rows}) == 50
    assert all((tmp_path / "faces" / name).is_file() for r in rows for name in r[:2])
    assert all((r[0].split("/")[0] == r[1].split("/")[0]) == (r[2] == "1") for r in rows)


def test_a_training_pack_holds_what_a_run_decodes_at_the_training_size(tmp_path):
    from siamese.data.pack import PackRecord, write_pack

    data = make_lfw(tmp_path / "lfw")
    (data / "lfw-tiny" / "Eve").mkdir()
    (data / "lfw-tiny" / "Eve" / "Eve_0001.jpg").write_bytes(jpeg_bytes((9, 9, 9)))  # in no pair list
    record = write_pack(data, tmp_path / "pack", image_size=16, cache_dir=tmp_path / "cache")
    assert PackRecord.read(tmp_path / "pack") == record
    # every image of the training identities (Ann, Bob: 3 each) and the 4 of the test pairs; not Eve's
    assert record.images == 10 and record.train_identities == 2 and record.image_size == 16
    assert Image.open(tmp_path / "pack" / "lfw-16" / "Ann" / "Ann_0003.jpg").size == (16, 16)
    original = load_lfw(data, 16, cache_dir=tmp_path / "cache")
    packed = load_lfw(tmp_path / "pack", 16, cache_dir=tmp_path / "cache")
    assert packed.bank.keys == original.bank.keys and packed.info["n_train_identity_images"] == 6
    assert (packed.bank.images.int() - original.bank.images.int()).abs().max() <= 8  # one more JPEG encoding
    from siamese.training.config import TrainConfig
    from siamese.training.run import load_dataset

    with pytest.raises(SiameseError, match="needs LFW's own images"):
        load_dataset(TrainConfig(data=str(tmp_path / "pack"), crop=0.8, cache=str(tmp_path / "cache")))
    with pytest.raises(SiameseError, match="pack exists: remove it"):
        write_pack(data, tmp_path / "pack", image_size=16, cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lfw", "pack"]  # no partial folder left


def test_training_images_are_the_centred_crop_of_each_frame(tmp_path):
    """siamese-train --crop: every training image is that centred share of its frame, resized."""
    from siamese.core.preprocess import decode_rgb, resize

    data = make_lfw(tmp_path / "lfw")
    ramp = np.linspace(0, 255, 40 * 40 * 3).reshape(40, 40, 3).astype(np.uint8)
    Image.fromarray(ramp).save(data / "lfw-tiny" / "Ann" / "Ann_0001.jpg", quality=95)
    bank = load_lfw(data, 16, cache_dir=tmp_path / "cache", crop=0.5).bank
    frame = decode_rgb(data / "lfw-tiny" / "Ann" / "Ann_0001.jpg")
    seen = bank.images[bank.row["Ann/Ann_0001.jpg"]].numpy()
    assert np.array_equal(seen, resize(frame[10:30, 10:30], 16)) and not np.array_equal(seen, resize(frame, 16))


def test_lfw_runs_default_to_the_crop_chosen_on_validation_and_older_runs_resume_as_whole_frames():
    from siamese.training.config import LFW_CROP, TrainConfig

    assert TrainConfig().crop_for("lfw") == LFW_CROP < 1 and TrainConfig().crop_for("synthetic") == 1.0
    assert TrainConfig(crop=0.9).crop_for("lfw") == 0.9
    recorded_before_crops = {"lr": 0.0003}  # a checkpoint's config from before --crop existed
    assert TrainConfig(crop=LFW_CROP).recipe_changes(recorded_before_crops) == {"crop": [1.0, LFW_CROP]}
    assert TrainConfig(crop=1.0).recipe_changes(recorded_before_crops) == {}
