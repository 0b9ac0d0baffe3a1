"""Prepared datasets (scoresde.data.prepared): each source kind, odd and hostile files, an
interrupted preparation resumed to the same bytes, and destinations that are unfinished or tampered."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from scoresde import data
from scoresde.data import prepare as prepare_command
from scoresde.data import prepared


def _image_folder(root, n_per_class=3):
    """Two classes of RGB, grayscale, RGBA and palette images of mixed sizes."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            size = (10 + 2 * i, 12 + i)
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            image = Image.fromarray(pixels)
            image = [image, image.convert("L"), image.convert("RGBA"), image.convert("P")][(c + i) % 4]
            image.save(root / name / f"{i}.png")
    return root


def test_a_folder_is_prepared_to_the_pixels_and_labels_the_in_memory_loader_reads(tmp_path):
    source = _image_folder(tmp_path / "src")
    manifest = prepared.prepare(source, tmp_path / "dst", resolution=8)
    assert manifest["count"] == 6 and manifest["shape"] == [3, 8, 8] and manifest["class_names"] == ["cat", "dog"]
    assert manifest["skipped"] == [] and not (tmp_path / "dst" / prepared.PROGRESS_FILE).exists()
    opened = prepared.open_prepared(tmp_path / "dst")
    assert isinstance(opened.images, np.memmap) and opened.images.dtype == np.uint8 and len(opened) == 6
    images, labels = data.load_image_folder(source, 8)
    np.testing.assert_array_equal(opened.images, np.round(images * 255).astype(np.uint8))
    np.testing.assert_array_equal(opened.labels, labels)
    gray = prepared.prepare(source, tmp_path / "gray", resolution=8, grayscale=True, labels="none")
    assert gray["shape"] == [1, 8, 8] and not gray["labels"] and prepared.open_prepared(tmp_path / "gray").labels is None


@pytest.mark.parametrize("layout", ["nhwc", "nchw", "nhw"])
@pytest.mark.parametrize("kind", ["npy", "npz"])
def test_uint8_arrays_are_prepared_row_by_row_in_nchw(tmp_path, kind, layout):
    rng = np.random.default_rng(1)
    nchw = rng.integers(0, 256, (7, 1 if layout == "nhw" else 3, 5, 5), dtype=np.uint8)
    array = {"nhwc": nchw.transpose(0, 2, 3, 1), "nchw": nchw, "nhw": nchw[:, 0]}[layout]
    labels = np.arange(7) % 3
    path = tmp_path / f"images.{kind}"
    if kind == "npy":
        np.save(path, array)
        np.save(tmp_path / "images_labels.npy", labels)
    else:
        np.savez_compressed(path, images=array, labels=labels)
    manifest = prepared.prepare(path, tmp_path / "dst")
    opened = prepared.open_prepared(tmp_path / "dst")
    np.testing.assert_array_equal(opened.images, nchw)
    np.testing.assert_array_equal(opened.labels, labels)
    assert manifest["source"]["kind"] == kind and manifest["shape"] == list(nchw.shape[1:])


def test_undecodable_files_are_skipped_and_named_or_stop_the_preparation(tmp_path, monkeypatch):
    source = _image_folder(tmp_path / "src")
    (source / "cat" / "text.png").write_text("this is no PNG")
    noise = np.random.default_rng(2).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(noise).save(source / "dog" / "truncated.png")
    (source / "dog" / "truncated.png").write_bytes((source / "dog" / "truncated.png").read_bytes()[:300])
    Image.fromarray(noise).save(source / "dog" / "bomb.png")  # 1600 pixels: a bomb below the lowered limit
    monkeypatch.setattr(data, "MAX_IMAGE_PIXELS", 1000)
    manifest = prepared.prepare(source, tmp_path / "skip", resolution=8)
    skipped = {entry["name"]: entry["error"] for entry in manifest["skipped"]}
    assert set(skipped) == {"cat/text.png", "dog/truncated.png", "dog/bomb.png"}
    assert "more than the 1000 an image may have" in skipped["dog/bomb.png"]
    assert manifest["count"] == 6 and len(prepared.open_prepared(tmp_path / "skip").labels) == 6
    with pytest.raises(ValueError, match=r"cannot read image file .*text\.png.*preparation stopped"):
        prepared.prepare(source, tmp_path / "stop", resolution=8, on_error="fail")
    with pytest.raises(prepared.UnfinishedDatasetError, match="unfinished preparation"):
        prepared.open_prepared(tmp_path / "stop")


def test_an_interrupted_preparation_resumes_to_the_same_bytes(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    array = rng.integers(0, 256, (50, 4, 4, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", array)
    straight = prepared.prepare(tmp_path / "images.npy", tmp_path / "straight")
    monkeypatch.setattr(prepared, "PROGRESS_EVERY", 8)

    def killed_at(done, total):
        if done == 21:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepared.prepare(tmp_path / "images.npy", tmp_path / "resumed", callback=killed_at)
    progress = json.loads((tmp_path / "resumed" / prepared.PROGRESS_FILE).read_text())
    assert progress["next"] == 16 and (tmp_path / "resumed" / prepared.IMAGES_FILE).stat().st_size == 21 * 48
    with pytest.raises(prepared.UnfinishedDatasetError, match="unfinished preparation"):
        prepared.open_prepared(tmp_path / "resumed")
    seen = []
    resumed = prepared.prepare(tmp_path / "images.npy", tmp_path / "resumed", callback=lambda done, total: seen.append(done))
    assert seen[0] == 17  # from the record on, not from the start
    assert resumed["sha256"] == straight["sha256"] and resumed["count"] == 50
    assert prepared.prepare(tmp_path / "images.npy", tmp_path / "resumed") == resumed  # finished: nothing to do
    with pytest.raises(ValueError, match="another source or other options"):
        prepared.prepare(tmp_path / "images.npy", tmp_path / "resumed", labels="none")


def test_a_tampered_or_unprepared_destination_is_refused_by_name(tmp_path):
    np.save(tmp_path / "images.npy", np.zeros((4, 3, 3), np.uint8))
    prepared.prepare(tmp_path / "images.npy", tmp_path / "dst")
    images = tmp_path / "dst" / prepared.IMAGES_FILE
    content = bytearray(images.read_bytes())
    content[5] ^= 1
    images.write_bytes(bytes(content))
    with pytest.raises(ValueError, match=r"images\.u8 does not match its SHA-256"):
        prepared.open_prepared(tmp_path / "dst")
    prepared.open_prepared(tmp_path / "dst", verify=False)  # sizes only: opens
    images.write_bytes(bytes(content[:-1]))
    with pytest.raises(ValueError, match=r"images\.u8: 35 bytes where the manifest says 36"):
        prepared.open_prepared(tmp_path / "dst", verify=False)
    with pytest.raises(prepared.UnfinishedDatasetError, match="not a prepared dataset"):
        prepared.open_prepared(tmp_path)
    (tmp_path / "dst" / prepared.MANIFEST_FILE).write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a scoresde-prepared manifest"):
        prepared.open_prepared(tmp_path / "dst")


def test_the_preparation_command_reports_in_one_line(tmp_path, capsys):
    _image_folder(tmp_path / "src")
    assert prepare_command.main(["--source", str(tmp_path / "src"), "--dest", str(tmp_path / "dst"), "--resolution", "6"]) == 0
    assert "done: 6 images of shape (3, 6, 6)" in capsys.readouterr().out
    assert prepare_command.main(["--source", str(tmp_path / "src"), "--dest", str(tmp_path / "d2")]) == 1
    assert "error: an image folder needs a resolution" in capsys.readouterr().err
    np.save(tmp_path / "float.npy", np.zeros((2, 4, 4), np.float32))
    assert prepare_command.main(["--source", str(tmp_path / "float.npy"), "--dest", str(tmp_path / "d3")]) == 1
    assert "images must be uint8" in capsys.readouterr().err


# -- training reads the memory map: the same run as from the images in memory ---------------------
def test_training_on_a_prepared_dataset_equals_training_on_the_same_images_in_memory(tmp_path):
    """Same split, same batches, same values (uint8 / 255 in float32 on the device): the weights and
    losses are bit-identical, while the prepared run holds only a memory map."""
    from scoresde import run_lib
    from scoresde.train import loop
    from tests.helpers import final_tensors, logged_losses, tiny_config

    rng = np.random.default_rng(4)
    images, labels = rng.integers(0, 256, (60, 8, 8, 1), dtype=np.uint8), np.arange(60) % 3
    np.savez(tmp_path / "images.npz", images=images, labels=labels)
    prepared.prepare(tmp_path / "images.npz", tmp_path / "prepared")
    common = {"training.n_steps": 6, "training.batch_size": 16, "data.random_flip": True, "model.num_classes": 3}
    in_memory = tiny_config(**{**common, "data.dataset": "npz", "data.path": str(tmp_path / "images.npz"), "data.cache": False})
    streamed = tiny_config(**{**common, "data.dataset": "prepared", "data.path": str(tmp_path / "prepared")})
    exp = run_lib.Experiment(streamed)
    assert isinstance(exp.x_train, prepared.StreamedExamples) and isinstance(exp.test_data.x, prepared.ImageRows)
    assert len(exp.x_train) == len(run_lib.Experiment(in_memory).x_train)
    run_lib.train(in_memory, tmp_path / "a")
    run_lib.train(streamed, tmp_path / "b")
    assert logged_losses(tmp_path / "a") == logged_losses(tmp_path / "b")
    (step_a, a), (step_b, b) = final_tensors(tmp_path / "a"), final_tensors(tmp_path / "b")
    assert step_a == step_b == 6 and a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
    assert (tmp_path / "b" / loop.METRICS_FILE).exists() and (tmp_path / "b" / "samples.png").exists()


def test_image_rows_are_lazy_views_that_decode_like_the_in_memory_loader(tmp_path):
    array = np.random.default_rng(5).integers(0, 256, (20, 4, 4, 3), dtype=np.uint8)
    np.savez(tmp_path / "images.npz", images=array)
    prepared.prepare(tmp_path / "images.npz", tmp_path / "p")
    rows = data.load_dataset("prepared", path=str(tmp_path / "p")).x
    expected = data.load_npz(tmp_path / "images.npz")[0]
    view = rows[np.array([7, 2, 19])][1:]
    assert isinstance(view, prepared.ImageRows) and view.shape == (2, 3, 4, 4)
    np.testing.assert_array_equal(np.asarray(view), expected[[2, 19]])  # bit-identical float32
    np.testing.assert_array_equal(rows[3], expected[3])
    subset = data.load_dataset("prepared", path=str(tmp_path / "p"), n=5, seed=1)
    np.testing.assert_array_equal(
        np.asarray(subset.x), data.load_dataset("npz", path=str(tmp_path / "images.npz"), n=5, seed=1).x
    )
    assert data.example_shape("prepared", path=str(tmp_path / "p")) == (3, 4, 4)
    with pytest.raises(ValueError, match="pad_to does not apply to a prepared dataset"):
        data.load_dataset("prepared", path=str(tmp_path / "p"), pad_to=8)


def test_two_process_ddp_on_a_prepared_dataset_matches_one_process(tmp_path):
    from scoresde import run_lib
    from tests.helpers import assert_same_tensors, final_tensors, logged_losses, run_ddp, tiny_config

    images = np.random.default_rng(6).integers(0, 256, (64, 8, 8, 1), dtype=np.uint8)
    np.savez(tmp_path / "images.npz", images=images)
    prepared.prepare(tmp_path / "images.npz", tmp_path / "prepared")
    overrides = {
        "data.dataset": "prepared",
        "data.path": str(tmp_path / "prepared"),
        "training.n_steps": 6,
        "training.batch_size": 16,
        "sampling.n_samples": 8,
    }
    run_lib.train(tiny_config(**overrides), tmp_path / "one")
    run_ddp({**overrides, "data.num_workers": 1}, tmp_path / "two", tmp_path / "rendezvous")  # each rank reads ahead
    for (s, a), (t, b) in zip(logged_losses(tmp_path / "one"), logged_losses(tmp_path / "two")):
        assert s == t and a == pytest.approx(b, rel=1e-5)
    assert_same_tensors(final_tensors(tmp_path / "one")[1], final_tensors(tmp_path / "two")[1], atol=1e-5)


def test_a_micro_batch_reads_only_its_own_rows_with_the_batch_s_flips(tmp_path):
    """Each process (each micro-batch) reads only the rows it trains on, and the values, flips
    included, are those of the whole batch read at once and sliced."""
    import torch

    from scoresde import run_lib
    from tests.helpers import tiny_config

    np.savez(tmp_path / "images.npz", images=np.random.default_rng(7).integers(0, 256, (40, 6, 6, 3), dtype=np.uint8))
    prepared.prepare(tmp_path / "images.npz", tmp_path / "p")
    common = {"data.random_flip": True, "training.batch_size": 8}
    streamed = run_lib.Experiment(tiny_config(**common, **{"data.dataset": "prepared", "data.path": str(tmp_path / "p")}))
    in_memory = run_lib.Experiment(
        tiny_config(**common, **{"data.dataset": "npz", "data.path": str(tmp_path / "images.npz"), "data.cache": False})
    )
    read = []
    real_read = streamed.x_train.rows.read_uint8
    streamed.x_train.rows.read_uint8 = lambda positions=None: (read.append(list(positions)), real_read(positions))[1]
    lazy, eager = streamed.objective().batch(3, 8), in_memory.objective().batch(3, 8)
    assert read == []  # nothing read until a micro-batch is taken
    assert bool(lazy[0].flip[4:8].any()) and not bool(lazy[0].flip[4:8].all())  # some flipped, some not
    second_half = lazy[0][4:8]
    torch.testing.assert_close(second_half, eager[0][4:8], rtol=0, atol=0)
    idx = data.batch_indices(len(streamed.x_train), 8, 3, streamed.config.seed)
    assert read == [list(idx[4:8])]
    for a, b in zip(lazy[1:3], eager[1:3]):  # the times and the noise: the same draws
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_an_edm_zip_is_read_member_by_member_with_its_labels(tmp_path):
    import zipfile

    source = _image_folder(tmp_path / "src")
    files = sorted(p.relative_to(source).as_posix() for p in source.rglob("*.png"))
    with zipfile.ZipFile(tmp_path / "images.zip", "w") as archive:
        for name in files:
            archive.write(source / name, f"00000/{name.replace('/', '_')}")
        archive.writestr("00000/broken.png", b"not a png")
        labels = [[f"00000/{name.replace('/', '_')}", 7 * (name.startswith("dog"))] for name in files]
        archive.writestr(prepared.ZIP_LABELS_FILE, json.dumps({"labels": [*labels, ["00000/broken.png", 1]]}))
    manifest = prepared.prepare(tmp_path / "images.zip", tmp_path / "dst", resolution=8)
    assert manifest["count"] == 6 and [s["name"] for s in manifest["skipped"]] == ["00000/broken.png"]
    opened = prepared.open_prepared(tmp_path / "dst")
    prepared.prepare(source, tmp_path / "folder", resolution=8)
    from_folder = prepared.open_prepared(tmp_path / "folder")
    np.testing.assert_array_equal(opened.images, from_folder.images)  # same files, same order, same pixels
    np.testing.assert_array_equal(opened.labels, 7 * from_folder.labels)
    with zipfile.ZipFile(tmp_path / "unlabelled.zip", "w") as archive:
        archive.write(source / files[0], "a.png")
        archive.writestr(prepared.ZIP_LABELS_FILE, json.dumps({"labels": [["other.png", 0]]}))
    with pytest.raises(ValueError, match="has no label for 1 images, e.g. 'a.png'"):
        prepared.prepare(tmp_path / "unlabelled.zip", tmp_path / "d2", resolution=8)
    (tmp_path / "bad.zip").write_bytes(b"PK not really")
    with pytest.raises(ValueError, match="not a readable zip file"):
        prepared.prepare(tmp_path / "bad.zip", tmp_path / "d3", resolution=8)


@pytest.mark.parametrize("kind", ["npz", "folder"])
def test_npz_and_folder_data_stream_from_a_prepared_copy_that_a_changed_source_replaces(tmp_path, kind):
    """By default (data.cache) an npz or folder dataset is prepared once into the cache and streamed:
    the same split and values as loading it whole; reused while the source is unchanged, replaced
    (a new copy, never a stale one) when a file changes."""
    from scoresde import run_lib
    from tests.helpers import tiny_config

    if kind == "npz":
        source = tmp_path / "images.npz"
        np.savez(source, images=np.random.default_rng(8).integers(0, 256, (30, 6, 6, 3), dtype=np.uint8))
        options = {"data.dataset": "npz", "data.path": str(source), "data.pad_to": 8}
    else:
        source = _image_folder(tmp_path / "src", n_per_class=8)
        options = {"data.dataset": "folder", "data.path": str(source), "data.image_size": 6, "data.pad_to": 8}
    options["data.cache_dir"] = str(tmp_path / "cache")
    streamed = run_lib.Experiment(tiny_config(**options))
    whole = run_lib.Experiment(tiny_config(**options, **{"data.cache": False}))
    assert isinstance(streamed.train_data.x, prepared.ImageRows) and isinstance(whole.train_data.x, np.ndarray)
    for a, b in ((streamed.train_data, whole.train_data), (streamed.test_data, whole.test_data)):
        np.testing.assert_array_equal(np.asarray(a.x), b.x)  # padded to 8x8 either way
        np.testing.assert_array_equal(a.labels, b.labels)
    copies = sorted((tmp_path / "cache").iterdir())
    assert len(copies) == 1
    stamp = (copies[0] / prepared.MANIFEST_FILE).stat().st_mtime_ns
    run_lib.Experiment(tiny_config(**options))
    assert (copies[0] / prepared.MANIFEST_FILE).stat().st_mtime_ns == stamp  # reused, not prepared again
    changed = source if kind == "npz" else next(source.rglob("*.png"))
    if kind == "npz":
        np.savez(source, images=np.zeros((30, 6, 6, 3), np.uint8))
    else:
        Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(changed)
    fresh = run_lib.Experiment(tiny_config(**options))
    assert len(list((tmp_path / "cache").iterdir())) == 2  # a new copy for the new content
    assert prepared.stale_copies(tmp_path / "cache") == [copies[0]]  # the old one: its source changed
    assert prepare_command.main(["--clean-cache", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert len(list((tmp_path / "cache").iterdir())) == 1 and prepared.stale_copies(tmp_path / "cache") == []
    np.testing.assert_array_equal(
        np.asarray(fresh.train_data.x), run_lib.Experiment(tiny_config(**options, **{"data.cache": False})).train_data.x
    )


def _cifar_batches(root, per_batch=4):
    import pickle

    root.mkdir(parents=True)
    rng = np.random.default_rng(9)
    batches = []
    for i, name in enumerate(prepared.CIFAR10_TRAIN_BATCHES):
        rows = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [(i + j) % 10 for j in range(per_batch)]
        with open(root / name, "wb") as handle:
            pickle.dump({b"batch_label": b"x", b"data": rows, b"labels": labels}, handle, protocol=3)
        batches.append((rows, labels))
    with open(root / prepared.CIFAR10_META, "wb") as handle:
        pickle.dump({b"label_names": [f"class{k}".encode() for k in range(10)]}, handle, protocol=3)
    return batches


def test_cifar10_batches_are_prepared_through_an_allow_list_unpickler(tmp_path):
    import pickle

    batches = _cifar_batches(tmp_path / "cifar-10-batches-py")
    manifest = prepared.prepare(tmp_path / "cifar-10-batches-py", tmp_path / "dst")
    opened = prepared.open_prepared(tmp_path / "dst")
    assert manifest["count"] == 20 and manifest["class_names"][3] == "class3" and opened.shape == (3, 32, 32)
    np.testing.assert_array_equal(opened.images, np.concatenate([rows for rows, _ in batches]).reshape(-1, 3, 32, 32))
    np.testing.assert_array_equal(opened.labels, np.concatenate([labels for _, labels in batches]))

    class Hostile:
        def __reduce__(self):
            return (__import__("os").system, ("echo pwned > " + str(tmp_path / "pwned"),))

    with open(tmp_path / "cifar-10-batches-py" / "data_batch_3", "wb") as handle:
        pickle.dump({b"data": Hostile()}, handle, protocol=3)
    with pytest.raises(ValueError, match=r"data_batch_3.*refused: the file asks to run (posix|os)\.system"):
        prepared.prepare(tmp_path / "cifar-10-batches-py", tmp_path / "d2")
    assert not (tmp_path / "pwned").exists()


def test_cifar10_streams_from_its_prepared_copy_without_torchvision(tmp_path, monkeypatch):
    import sys

    from scoresde import run_lib
    from tests.helpers import tiny_config

    monkeypatch.setitem(sys.modules, "torchvision", None)  # importing it now fails
    _cifar_batches(tmp_path / "root" / "cifar-10-batches-py")
    exp = run_lib.Experiment(
        tiny_config(**{"data.dataset": "cifar10", "data.path": str(tmp_path / "root"), "data.cache_dir": str(tmp_path / "c")})
    )
    assert isinstance(exp.train_data.x, prepared.ImageRows) and len(exp.train_data) + len(exp.test_data) == 20


def test_the_evaluation_modes_read_a_prepared_set_bounded(tmp_path):
    """The likelihood reads its split chunk by chunk; the feature classifier and the benchmark's
    real-data features take a seeded subset of a set larger than FEATURE_MAX_EXAMPLES (never all)."""
    import torch

    from scoresde import likelihood, oracle, run_lib
    from scoresde.cli import experiment
    from scoresde.sde_lib import VPSDE
    from tests.helpers import tiny_config

    np.savez(tmp_path / "images.npz", images=np.random.default_rng(10).integers(0, 256, (40, 2, 2, 1), dtype=np.uint8))
    prepared.prepare(tmp_path / "images.npz", tmp_path / "p")
    rows = data.load_dataset("prepared", path=str(tmp_path / "p")).x
    sde, mixture = VPSDE(), oracle.GaussianMixture(torch.ones(1), torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5))
    options = dict(levels=256, centered=False, n_dequantize=1, batch_size=16, seed=0, device="cpu", method="rk4", steps=4)
    lazy = likelihood.evaluate_dataset(sde, mixture.score_fn(sde), rows, **options)
    whole = likelihood.evaluate_dataset(sde, mixture.score_fn(sde), np.asarray(rows), **options)
    np.testing.assert_array_equal(lazy["logp"], whole["logp"])

    config = tiny_config(**{"data.dataset": "prepared", "data.path": str(tmp_path / "p")})
    exp = run_lib.Experiment(config)
    x, labels = experiment.bounded_examples(config, exp.train_data, torch.device("cpu"), limit=10)
    assert x.shape == (10, 1, 2, 2) and labels is None
    again = experiment.bounded_examples(config, exp.train_data, torch.device("cpu"), limit=10)[0]
    np.testing.assert_array_equal(x.numpy(), again.numpy())  # the subset is a function of the seed
    full, _ = experiment.bounded_examples(config, exp.train_data, torch.device("cpu"), limit=1000)
    assert len(full) == len(exp.train_data)


def test_reading_ahead_in_a_thread_changes_nothing(tmp_path):
    """data.prefetch reads step k + 1's rows while step k computes: the same losses and tensors as
    reading each batch when its step starts, on streamed data with flips."""
    from scoresde import run_lib
    from tests.helpers import final_tensors, logged_losses, tiny_config

    np.savez(tmp_path / "images.npz", images=np.random.default_rng(11).integers(0, 256, (48, 6, 6, 3), dtype=np.uint8))
    prepared.prepare(tmp_path / "images.npz", tmp_path / "p")
    common = {"data.dataset": "prepared", "data.path": str(tmp_path / "p"), "data.random_flip": True, "training.n_steps": 7}
    common["training.batch_size"] = 8
    run_lib.train(tiny_config(**common, **{"data.prefetch": True}), tmp_path / "ahead")
    run_lib.train(tiny_config(**common, **{"data.prefetch": False}), tmp_path / "inline")
    assert logged_losses(tmp_path / "ahead") == logged_losses(tmp_path / "inline")
    a, b = final_tensors(tmp_path / "ahead")[1], final_tensors(tmp_path / "inline")[1]
    assert all(bool((a[k] == b[k]).all()) for k in a)
    # stopped at step 4 and resumed with reading ahead: the same run again
    run_lib.train(tiny_config(**{**common, "training.n_steps": 4, "data.prefetch": True}), tmp_path / "resumed")
    run_lib.train(tiny_config(**common, **{"data.prefetch": True}), tmp_path / "resumed")
    assert logged_losses(tmp_path / "resumed") == logged_losses(tmp_path / "inline")
    c = final_tensors(tmp_path / "resumed")[1]
    assert all(bool((c[k] == b[k]).all()) for k in b)


def test_worker_processes_read_the_scheduled_rows_ahead_and_nothing_else(tmp_path):
    """ReadAhead serves the scheduled reads in order from its workers (the bytes of a direct read);
    a read outside the schedule is refused (None), without consuming the queue."""
    import torch

    from scoresde.data import loader

    np.savez(tmp_path / "images.npz", images=np.random.default_rng(12).integers(0, 256, (30, 4, 4, 3), dtype=np.uint8))
    prepared.prepare(tmp_path / "images.npz", tmp_path / "p")
    rows = data.load_dataset("prepared", path=str(tmp_path / "p")).x[3:]  # a view: row numbers, not a copy
    reads = loader.StepReads(len(rows), 8, seed=5, parts=(slice(0, 4), slice(4, 8)))
    with loader.ReadAhead(rows, reads, range(2, 7), num_workers=2, prefetch=1) as ahead:
        assert ahead.take(np.array([0, 1, 2, 3])) is None  # not the next scheduled read
        for step in range(2, 7):
            for positions in reads(step):
                got = ahead.take(positions)
                assert got is not None and got.dtype == torch.uint8
                np.testing.assert_array_equal(got.numpy(), rows.read_uint8(positions))
        assert ahead.take(reads(7)[0]) is None  # past the schedule
    assert (ahead.served, ahead.missed) == (10, 1)
    with pytest.raises(ValueError, match="num_workers must be at least 1"):
        loader.ReadAhead(rows, reads, range(3), num_workers=0)


def test_image_rows_pickle_by_file_name_so_workers_copy_nothing(tmp_path):
    import pickle

    np.save(tmp_path / "images.npy", np.random.default_rng(13).integers(0, 256, (400, 3, 16, 16), dtype=np.uint8))
    prepared.prepare(tmp_path / "images.npy", tmp_path / "p")
    rows = data.load_dataset("prepared", path=str(tmp_path / "p")).x[np.arange(100, 400, 3)]
    payload = pickle.dumps(rows)
    assert len(payload) < 4096 < rows.images.nbytes  # the file name and the row numbers, not the pixels
    again = pickle.loads(payload)
    assert isinstance(again.images, np.memmap) and again.shape == rows.shape
    np.testing.assert_array_equal(again.read_uint8(), rows.read_uint8())


def test_training_with_loader_workers_is_the_run_without_them_and_resumes_exactly(tmp_path, monkeypatch):
    """data.num_workers=2 with gradient accumulation and flips: every micro-batch is served by the
    workers, the losses and tensors equal a run without workers, and a run stopped at step 4 and
    resumed with workers repeats it."""
    from scoresde import run_lib
    from scoresde.data import loader
    from tests.helpers import final_tensors, logged_losses, tiny_config

    np.savez(tmp_path / "images.npz", images=np.random.default_rng(14).integers(0, 256, (48, 6, 6, 3), dtype=np.uint8))
    prepared.prepare(tmp_path / "images.npz", tmp_path / "p")
    common = {"data.dataset": "prepared", "data.path": str(tmp_path / "p"), "data.random_flip": True}
    common.update({"training.n_steps": 7, "training.batch_size": 8, "training.grad_accum": 2})
    served: list[bool] = []
    take = loader.ReadAhead.take

    def counted_take(self, positions):
        rows = take(self, positions)
        served.append(rows is not None)
        return rows

    monkeypatch.setattr(loader.ReadAhead, "take", counted_take)
    run_lib.train(tiny_config(**common, **{"data.num_workers": 2}), tmp_path / "workers")
    assert len(served) == 7 * 2 and all(served)  # two micro-batches a step, each from the queue
    run_lib.train(tiny_config(**common), tmp_path / "inline")
    assert logged_losses(tmp_path / "workers") == logged_losses(tmp_path / "inline")
    a, b = final_tensors(tmp_path / "workers")[1], final_tensors(tmp_path / "inline")[1]
    assert all(bool((a[k] == b[k]).all()) for k in a)
    run_lib.train(tiny_config(**{**common, "training.n_steps": 4, "data.num_workers": 2}), tmp_path / "resumed")
    run_lib.train(tiny_config(**common, **{"data.num_workers": 2, "data.prefetch": True}), tmp_path / "resumed")
    assert logged_losses(tmp_path / "resumed") == logged_losses(tmp_path / "inline")
    c = final_tensors(tmp_path / "resumed")[1]
    assert all(bool((c[k] == b[k]).all()) for k in b)
