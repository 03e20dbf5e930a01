"""Tests of tcsnn.data: format parsers on tiny files made here, datasets on the shared real data."""

from __future__ import annotations

import gzip
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits

from tcsnn.data import (
    CIFAR10,
    DATASETS,
    DIGITS_TRAIN_FRACTION,
    IDX_DTYPES,
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    MNIST,
    Digits8x8,
    FashionMNIST,
    dataset_info,
    load_arrays,
    read_cifar_bin,
    read_cifar_pickle,
    read_idx,
)

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
MNIST_DIR = SHARED_DATA / "mnist"
CIFAR_BIN_DIR = SHARED_DATA / "cifar10" / "cifar-10-batches-bin"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

needs_mnist = pytest.mark.skipif(
    not (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(), reason=f"real MNIST not found in {MNIST_DIR}"
)
needs_cifar = pytest.mark.skipif(
    not (CIFAR_BIN_DIR / "data_batch_1.bin").is_file(), reason=f"real CIFAR-10 not found in {CIFAR_BIN_DIR}"
)
needs_fashion = pytest.mark.skipif(
    not (FASHION_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST not installed in {FASHION_DIR} (apt-get install dataset-fashion-mnist)",
)

_CODE_OF = {dtype.str.lstrip("<>|="): code for code, dtype in IDX_DTYPES.items()}


# ---------------------------------------------------------------------------------------------------------
# Helpers that write tiny files in the real formats
# ---------------------------------------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array`` (big-endian header and values)."""
    big = array.astype(array.dtype.newbyteorder(">"))
    code = _CODE_OF[big.dtype.str.lstrip("<>|=")]
    header = bytes([0, 0, code, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + big.tobytes()


def write(path: Path, payload: bytes, gz: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def tiny_mnist(n: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def write_mnist_split(
    folder: Path, train: bool, images: np.ndarray, labels: np.ndarray, gz: bool = True, dotted: bool = False
) -> None:
    prefix = "train" if train else "t10k"
    sep = "." if dotted else "-"
    suffix = ".gz" if gz else ""
    write(folder / f"{prefix}-images{sep}idx3-ubyte{suffix}", idx_bytes(images), gz)
    write(folder / f"{prefix}-labels{sep}idx1-ubyte{suffix}", idx_bytes(labels), gz)


def tiny_cifar(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(pixels uint8 (n, 3072) as R, G, B planes, labels uint8 (n,))."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def write_cifar(folder: Path, kind: str, records: int = 2) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write all six CIFAR-10 batches in the binary ("bin") or python ("py") layout; return their contents."""
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        pixels, labels = tiny_cifar(records, seed=i)
        batches[name] = (pixels, labels)
        if kind == "bin":
            (folder / f"{name}.bin").write_bytes(np.concatenate([labels[:, None], pixels], axis=1).tobytes())
        else:
            batch = {b"batch_label": b"x", b"labels": labels.tolist(), b"data": pixels}
            (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return batches


# ---------------------------------------------------------------------------------------------------------
# read_idx
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_read_idx_round_trip_images_and_labels(tmp_path: Path, gz: bool) -> None:
    images, labels = tiny_mnist()
    got_images = read_idx(write(tmp_path / "img", idx_bytes(images), gz), magic=IDX_IMAGES_MAGIC)
    got_labels = read_idx(write(tmp_path / "lab", idx_bytes(labels), gz), magic=IDX_LABELS_MAGIC)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert got_images.flags.writeable and got_images.dtype == np.uint8


def test_read_idx_recognises_gzip_by_content_not_name(tmp_path: Path) -> None:
    _, labels = tiny_mnist()
    np.testing.assert_array_equal(
        read_idx(write(tmp_path / "labels.raw", idx_bytes(labels), gz=True)), labels
    )
    np.testing.assert_array_equal(
        read_idx(write(tmp_path / "labels.gz", idx_bytes(labels), gz=False)), labels
    )


@settings(max_examples=25, deadline=None)
@given(
    dtype=st.sampled_from([">u1", ">i1", ">i2", ">i4", ">f4", ">f8"]),
    shape=st.lists(st.integers(0, 4), min_size=1, max_size=4),
    gz=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_read_idx_round_trip_any_type_code(dtype: str, shape: list[int], gz: bool, seed: int) -> None:
    values = np.random.default_rng(seed).integers(-100, 100, shape).astype(dtype)
    with tempfile.TemporaryDirectory() as tmp:
        got = read_idx(write(Path(tmp) / "x.idx", idx_bytes(values), gz))
    assert got.shape == values.shape and got.dtype == values.dtype.newbyteorder("=")
    np.testing.assert_array_equal(got, values)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_read_idx_truncated_payload_names_file_and_byte_counts(tmp_path: Path, gz: bool) -> None:
    images, _ = tiny_mnist(n=2)
    path = write(tmp_path / "train-images-idx3-ubyte", idx_bytes(images)[:-10], gz)
    expected = 16 + 2 * 28 * 28
    with pytest.raises(ValueError, match="truncated") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert f"{expected} bytes" in str(info.value) and f"{expected - 10} bytes" in str(info.value)


def test_read_idx_trailing_bytes(tmp_path: Path) -> None:
    _, labels = tiny_mnist()
    path = write(tmp_path / "labels", idx_bytes(labels) + b"\0", gz=False)
    with pytest.raises(ValueError, match="trailing bytes"):
        read_idx(path)


@pytest.mark.parametrize(
    "header",
    [b"\x01\x00\x08\x01", b"\x00\x00\x07\x01", b"\x00\x00\x08\x00"],
    ids=["nonzero-lead", "unknown-type", "zero-dims"],
)
def test_read_idx_bad_magic(tmp_path: Path, header: bytes) -> None:
    path = write(tmp_path / "bad", header + (3).to_bytes(4, "big") + b"abc", gz=False)
    with pytest.raises(ValueError, match="bad IDX magic number") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_unexpected_magic(tmp_path: Path) -> None:
    images, _ = tiny_mnist()
    path = write(tmp_path / "labels-but-images", idx_bytes(images), gz=False)
    with pytest.raises(ValueError, match=r"magic number 2051 .* expected 2049"):
        read_idx(path, magic=IDX_LABELS_MAGIC)


@pytest.mark.parametrize("payload", [b"\x00\x00", b"\x00\x00\x08\x03\x00\x00\x00\x02"], ids=["magic", "dims"])
def test_read_idx_truncated_header(tmp_path: Path, payload: bytes) -> None:
    with pytest.raises(ValueError, match="truncated"):
        read_idx(write(tmp_path / "short", payload, gz=False))


def test_read_idx_truncated_and_corrupt_gzip(tmp_path: Path) -> None:
    images, _ = tiny_mnist()
    packed = gzip.compress(idx_bytes(images))
    cut = tmp_path / "cut.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(ValueError, match="truncated") as info:
        read_idx(cut)
    assert str(cut) in str(info.value)
    bad = tmp_path / "bad.gz"
    bad.write_bytes(packed[:10] + bytes(b ^ 0xFF for b in packed[10:40]) + packed[40:])
    with pytest.raises(ValueError, match=str(bad)):
        read_idx(bad)


def test_read_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        read_idx(tmp_path / "nothing-here")


# ---------------------------------------------------------------------------------------------------------
# MNIST-format datasets on tiny files
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sub", ["", "mnist", "MNIST/raw", "MNIST"])
@pytest.mark.parametrize("gz,dotted", [(True, False), (False, False), (False, True), (True, True)])
def test_mnist_finds_every_layout_and_name(tmp_path: Path, sub: str, gz: bool, dotted: bool) -> None:
    images, labels = tiny_mnist(n=4)
    write_mnist_split(tmp_path / sub, train=False, images=images, labels=labels, gz=gz, dotted=dotted)
    ds = MNIST(tmp_path, train=False)
    assert ds.folder == tmp_path / sub if sub else tmp_path
    np.testing.assert_array_equal(ds.data.numpy(), images)
    assert ds.targets.dtype == torch.int64 and ds.targets.tolist() == labels.tolist()


def test_mnist_prefers_root_over_subfolders(tmp_path: Path) -> None:
    a, la = tiny_mnist(n=3, seed=1)
    b, lb = tiny_mnist(n=4, seed=2)
    write_mnist_split(tmp_path, True, a, la)
    write_mnist_split(tmp_path / "mnist", True, b, lb)
    assert len(MNIST(tmp_path)) == 3
    assert len(MNIST(str(tmp_path / "mnist"))) == 4


def test_fashion_mnist_subfolders(tmp_path: Path) -> None:
    images, labels = tiny_mnist(n=3)
    write_mnist_split(tmp_path / "FashionMNIST" / "raw", True, images, labels, gz=False)
    ds = FashionMNIST(tmp_path)
    assert ds.classes[0] == "T-shirt/top" and len(ds) == 3
    x, y = load_arrays("fashion-mnist", tmp_path, train=True)
    assert x.shape == (3, 1, 28, 28) and y.tolist() == labels.tolist()


def test_dataset_contract_items_and_transforms(tmp_path: Path) -> None:
    images, labels = tiny_mnist(n=4)
    images[1] = 255
    write_mnist_split(tmp_path, True, images, labels)
    ds = MNIST(tmp_path)
    assert len(ds) == 4 and ds.data.dtype == torch.uint8 and ds.data.shape == (4, 28, 28)
    assert ds.classes == [str(i) for i in range(10)] and ds.class_to_idx["3"] == 3
    image, target = ds[1]
    assert image.dtype == torch.float32 and image.shape == (1, 28, 28)
    assert torch.all(image == 1.0) and target == int(labels[1]) and isinstance(target, int)
    image0, _ = ds[0]
    torch.testing.assert_close(image0[0], torch.from_numpy(images[0]).float() / 255)
    shifted = MNIST(tmp_path, transform=lambda im: im.sum(), target_transform=lambda t: t + 100)
    value, shifted_target = shifted[2]
    assert shifted_target == int(labels[2]) + 100
    torch.testing.assert_close(value, torch.from_numpy(images[2]).float().div(255).sum())
    with pytest.raises(TypeError, match="transform must be callable"):
        MNIST(tmp_path, transform="not callable")  # type: ignore[arg-type]


def test_missing_files_name_expected_files_and_every_folder_searched(tmp_path: Path) -> None:
    (tmp_path / "mnist").mkdir()
    with pytest.raises(FileNotFoundError) as info:
        MNIST(tmp_path, train=True)
    message = str(info.value)
    for expected in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte", "train-images.idx3-ubyte"):
        assert expected in message
    for folder in (tmp_path, tmp_path / "mnist", tmp_path / "MNIST" / "raw", tmp_path / "MNIST"):
        assert str(folder) in message
    assert "never downloads" in message and "\n" not in message


def test_missing_labels_only_is_not_found(tmp_path: Path) -> None:
    images, _ = tiny_mnist()
    write(tmp_path / "t10k-images-idx3-ubyte.gz", idx_bytes(images), gz=True)
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        MNIST(tmp_path, train=False)


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MNIST(tmp_path / "absent")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        CIFAR10(tmp_path / "file")


def test_image_label_count_mismatch(tmp_path: Path) -> None:
    images, labels = tiny_mnist(n=5)
    write_mnist_split(tmp_path, True, images, labels[:4])
    with pytest.raises(ValueError, match="5 images but .* 4 labels") as info:
        MNIST(tmp_path)
    assert "train-images-idx3-ubyte.gz" in str(info.value) and "train-labels-idx1-ubyte.gz" in str(info.value)


def test_labels_out_of_range(tmp_path: Path) -> None:
    images, labels = tiny_mnist(n=5)
    labels[3] = 12
    write_mnist_split(tmp_path, True, images, labels)
    with pytest.raises(ValueError, match=r"label 12 at index 3; expected 0\.\.9"):
        MNIST(tmp_path)


def test_wrong_image_size(tmp_path: Path) -> None:
    write_mnist_split(tmp_path, True, np.zeros((2, 8, 8), np.uint8), np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match=r"\(8, 8\), expected \(28, 28\)"):
        MNIST(tmp_path)


@pytest.mark.parametrize("cls", [MNIST, FashionMNIST, CIFAR10])
def test_download_is_refused(tmp_path: Path, cls: type) -> None:
    with pytest.raises(ValueError, match="never downloads") as info:
        cls(tmp_path, download=True)
    assert "root" in str(info.value)


# ---------------------------------------------------------------------------------------------------------
# CIFAR-10 on tiny files
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind,sub",
    [("bin", "cifar-10-batches-bin"), ("py", "cifar-10-batches-py"), ("py", ""), ("bin", "cifar10")],
)
def test_cifar_both_versions_give_hwc_data(tmp_path: Path, kind: str, sub: str) -> None:
    batches = write_cifar(tmp_path / sub, kind)
    train, test = CIFAR10(tmp_path, train=True), CIFAR10(tmp_path, train=False)
    assert train.data.shape == (10, 32, 32, 3) and test.data.shape == (2, 32, 32, 3)
    assert train.data.dtype == torch.uint8 and train.targets.dtype == torch.int64
    pixels, labels = batches["data_batch_2"]
    # the third training image is the first of batch 2; plane c, row r, column k sits at c*1024 + r*32 + k
    for c, r, k in [(0, 0, 0), (1, 5, 7), (2, 31, 31)]:
        assert int(train.data[2, r, k, c]) == int(pixels[0, c * 1024 + r * 32 + k])
    image, target = train[2]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and target == int(labels[0])
    torch.testing.assert_close(image.reshape(-1), torch.from_numpy(pixels[0]).float() / 255)
    x, y = load_arrays("cifar10", tmp_path, train=False)
    assert x.shape == (2, 3, 32, 32) and x.is_contiguous() and y.tolist() == batches["test_batch"][1].tolist()
    torch.testing.assert_close(x[1].reshape(-1), torch.from_numpy(batches["test_batch"][0][1]).float() / 255)


def test_cifar_binary_preferred_over_python_in_same_parent(tmp_path: Path) -> None:
    write_cifar(tmp_path / "cifar-10-batches-py", "py", records=1)
    write_cifar(tmp_path / "cifar-10-batches-bin", "bin", records=3)
    assert CIFAR10(tmp_path).folder.name == "cifar-10-batches-bin"


def test_cifar_pickle_with_legacy_numpy_module_name(tmp_path: Path) -> None:
    pixels, labels = tiny_cifar(2, seed=0)
    blob = pickle.dumps({b"data": pixels, b"labels": labels.tolist()}, protocol=2)
    assert b"numpy._core.multiarray" in blob
    path = tmp_path / "data_batch_1"
    path.write_bytes(blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))  # as the originals
    images, got = read_cifar_pickle(path)
    assert images.shape == (2, 32, 32, 3) and got.tolist() == labels.tolist()


def test_cifar_pickle_refuses_other_objects(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Path("x"), b"labels": [0]}))
    with pytest.raises(ValueError, match="refusing to unpickle") as info:
        read_cifar_pickle(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "batch,match",
    [
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but 1 labels"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "label 10 at index 1"),
        ({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}, "uint8 array"),
        ({b"labels": [0]}, "no 'data' entry"),
        ([1, 2], "expected a dict"),
    ],
    ids=["count", "range", "shape", "key", "type"],
)
def test_cifar_pickle_errors(tmp_path: Path, batch: object, match: str) -> None:
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch))
    with pytest.raises(ValueError, match=match):
        read_cifar_pickle(path)


def test_cifar_pickle_truncated(tmp_path: Path) -> None:
    path = tmp_path / "test_batch"
    blob = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]})
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="not a readable"):
        read_cifar_pickle(path)


def test_cifar_bin_truncated_and_bad_label(tmp_path: Path) -> None:
    path = tmp_path / "test_batch.bin"
    path.write_bytes(bytes(2 * 3073 - 5))
    with pytest.raises(ValueError, match=r"6141 bytes .*expected 6146 bytes") as info:
        read_cifar_bin(path)
    assert str(path) in str(info.value)
    path.write_bytes(bytes([3]) + bytes(3072) + bytes([11]) + bytes(3072))
    with pytest.raises(ValueError, match="label 11 at index 1"):
        read_cifar_bin(path)


def test_cifar_missing_lists_both_versions(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        CIFAR10(tmp_path, train=True)
    message = str(info.value)
    assert "data_batch_5.bin" in message and "python version" in message
    assert str(tmp_path / "cifar-10-batches-py") in message


# ---------------------------------------------------------------------------------------------------------
# Digits, load_arrays and DATASETS
# ---------------------------------------------------------------------------------------------------------


def test_digits_shape_range_and_deterministic_disjoint_split() -> None:
    train, test = Digits8x8(train=True), Digits8x8(train=False)
    assert len(train) + len(test) == 1797 and len(train) == int(1797 * DIGITS_TRAIN_FRACTION)
    assert train.data.dtype == torch.uint8 and int(train.data.max()) == 16
    image, target = train[0]
    assert image.shape == (1, 8, 8) and image.dtype == torch.float32 and 0 <= target <= 9
    x, y = load_arrays("digits", "/ignored", train=True)
    assert x.shape == (len(train), 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    torch.testing.assert_close(x[5], train[5][0])
    x2, y2 = load_arrays("digits", None, train=True)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x_test, y_test = load_arrays("digits", None, train=False)
    # together the splits are exactly sklearn's digits: a partition, no image lost or repeated
    everything = load_digits()
    expected = sorted(
        zip(everything.target.tolist(), (everything.images / 16).reshape(-1, 64).tolist(), strict=True)
    )
    got = sorted(
        zip(torch.cat([y, y_test]).tolist(), torch.cat([x, x_test]).flatten(1).double().tolist(), strict=True)
    )
    assert got == expected
    assert set(y.tolist()) == set(range(10))


def test_load_arrays_argument_errors() -> None:
    with pytest.raises(ValueError, match="mnist, fashion-mnist, cifar10, digits"):
        load_arrays("imagenet", None, True)
    for name in ("mnist", "cifar10"):
        with pytest.raises(ValueError, match="--data-root"):
            load_arrays(name, None, True)


def test_datasets_table() -> None:
    assert set(DATASETS) == {"mnist", "fashion-mnist", "cifar10", "digits"}
    assert dataset_info("cifar10").shape == (3, 32, 32) and dataset_info("cifar10").num_classes == 10
    assert dataset_info("mnist").num_inputs == 784 and dataset_info("digits").shape == (1, 8, 8)
    assert all(info.num_classes == 10 for info in DATASETS.values())
    assert DATASETS["fashion-mnist"].default_root == FASHION_DIR
    with pytest.raises(TypeError):
        DATASETS["new"] = DATASETS["mnist"]  # type: ignore[index]


# ---------------------------------------------------------------------------------------------------------
# The real shared data
# ---------------------------------------------------------------------------------------------------------


@needs_mnist
def test_real_mnist() -> None:
    train = MNIST(SHARED_DATA, train=True)
    assert train.folder == MNIST_DIR
    assert train.data.shape == (60000, 28, 28) and train.targets.shape == (60000,)
    assert train.targets[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert train.targets.bincount().tolist()[:3] == [5923, 6742, 5958]
    x, y = load_arrays("mnist", MNIST_DIR, train=False)
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


@needs_cifar
def test_real_cifar10_spot_values() -> None:
    images, labels = read_cifar_bin(CIFAR_BIN_DIR / "data_batch_1.bin")
    assert images.shape == (10000, 32, 32, 3) and labels.shape == (10000,)
    assert images[0, 0, :3, 0].tolist() == [59, 43, 50]  # first record, red plane, starts 59, 43, 50
    assert images[0, 31, 29:, 2].tolist() == [140, 84, 72]  # ... and its blue plane ends 140, 84, 72
    assert images[-1, 0, :3, 0].tolist() == [62, 61, 60]
    assert images[-1, 31, 29:, 2].tolist() == [130, 130, 131]
    test = CIFAR10(SHARED_DATA, train=False)
    assert test.folder == CIFAR_BIN_DIR and len(test) == 10000
    assert test.targets.bincount().tolist() == [1000] * 10
    assert test.classes[0] == "airplane" and test.classes[-1] == "truck"


@needs_fashion
def test_real_fashion_mnist() -> None:
    x, y = load_arrays("fashion-mnist", None, train=False)
    assert x.shape == (10000, 1, 28, 28) and y.bincount().tolist() == [1000] * 10
    ds = FashionMNIST(FASHION_DIR, train=False)
    assert torch.equal(ds.targets, y) and ds.classes[-1] == "Ankle boot"


@needs_mnist
def test_real_mnist_train_arrays() -> None:
    x, y = load_arrays("mnist", MNIST_DIR, train=True)
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.float32 and len(y) == 60000
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
