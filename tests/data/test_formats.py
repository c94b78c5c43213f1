"""The format parsers accept the official layouts and reject damaged files with an error naming the file."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile

import numpy as np
import pytest

from convlab.data import DataError
from convlab.data.formats import (
    check_labels,
    gunzip,
    parse_cifar_binary,
    parse_cifar_pickle,
    parse_idx,
    read_file,
    read_tar_members,
)

from .conftest import FakeData


def test_idx_images_parse_to_their_header_shape():
    images = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    assert np.array_equal(parse_idx(FakeData.idx(images), "x", 3), images)


def test_idx_labels_parse_to_a_vector():
    labels = np.array([5, 0, 4, 1, 9], np.uint8)
    assert np.array_equal(parse_idx(FakeData.idx(labels), "x", 1), labels)


def test_read_file_unzips_gzip_and_passes_raw_bytes_through(tmp_path):
    (tmp_path / "a.gz").write_bytes(gzip.compress(b"payload"))
    (tmp_path / "b").write_bytes(b"payload")
    assert read_file(tmp_path / "a.gz") == read_file(tmp_path / "b") == b"payload"


def test_idx_with_wrong_magic_number_names_file_and_both_magics():
    raw = FakeData.idx(np.zeros(4, np.uint8))  # labels file (0x801) where images (0x803) are expected
    with pytest.raises(DataError, match=r"images\.idx.*0x00000801.*expected 0x00000803"):
        parse_idx(raw, "images.idx", 3)


@pytest.mark.parametrize("cut", [2, 10, -1])
def test_truncated_idx_is_reported(cut):
    raw = FakeData.idx(np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match=r"f\.idx.*truncated"):
        parse_idx(raw[:cut], "f.idx", 3)


def test_idx_with_trailing_bytes_is_reported():
    raw = FakeData.idx(np.zeros(3, np.uint8)) + b"\0"
    with pytest.raises(DataError, match="longer than its header says"):
        parse_idx(raw, "f.idx", 1)


def test_truncated_gzip_is_reported_with_the_file_name():
    raw = gzip.compress(np.random.default_rng(0).bytes(5000))
    with pytest.raises(DataError, match=r"f\.gz.*truncated"):
        gunzip(raw[: len(raw) // 2], "f.gz")


def test_corrupt_gzip_is_reported():
    raw = bytearray(gzip.compress(b"x" * 1000))
    raw[12:20] = b"\xff" * 8
    with pytest.raises(DataError, match=r"f\.gz"):
        gunzip(bytes(raw), "f.gz")


def test_cifar_binary_records_split_into_label_and_planes():
    image = np.arange(3072, dtype=np.int64).astype(np.uint8).reshape(3, 32, 32)
    raw = bytes([7]) + image.tobytes() + bytes([2]) + image[::-1].tobytes()
    images, labels = parse_cifar_binary(raw, "b.bin", 1)
    assert images.shape == (2, 3, 32, 32) and labels[:, 0].tolist() == [7, 2]
    assert np.array_equal(images[0], image) and np.array_equal(images[1], image[::-1])


def test_cifar_binary_with_wrong_record_size_is_reported():
    with pytest.raises(DataError, match=r"b\.bin.*3073-byte records"):
        parse_cifar_binary(bytes(3073 * 2 + 5), "b.bin", 1)


def test_cifar100_record_size_differs_from_cifar10():
    with pytest.raises(DataError, match="3074-byte records"):
        parse_cifar_binary(bytes(3073 * 2), "train.bin", 2)


def test_empty_cifar_binary_is_reported():
    with pytest.raises(DataError, match=r"b\.bin.*empty"):
        parse_cifar_binary(b"", "b.bin", 1)


def test_label_out_of_range_names_file_record_and_value():
    with pytest.raises(DataError, match=r"b\.bin: record 2 has label 10, but there are 10 classes"):
        check_labels(np.array([0, 9, 10, 3]), 10, "b.bin")


def test_cifar_pickle_gives_images_and_requested_labels():
    images = FakeData.images(3, (3, 32, 32))
    batch = {b"data": images.reshape(3, -1), b"fine_labels": [1, 2, 3], b"coarse_labels": [0, 0, 1]}
    raw = pickle.dumps(batch, protocol=2)
    got, fine, coarse = parse_cifar_pickle(raw, "train", ("fine_labels", "coarse_labels"))
    assert np.array_equal(got, images) and fine.tolist() == [1, 2, 3] and coarse.tolist() == [0, 0, 1]


class Evil:
    def __reduce__(self):
        return (print, ("owned",))


def test_cifar_pickle_refuses_anything_an_official_file_never_holds():
    raw = pickle.dumps({b"data": Evil()}, protocol=2)
    with pytest.raises(DataError, match=r"data_batch_1.*print.*refusing"):
        parse_cifar_pickle(raw, "data_batch_1", ("labels",))


def test_truncated_cifar_pickle_is_reported():
    batch = {b"data": FakeData.images(2, (3, 32, 32)).reshape(2, -1), b"labels": [0, 1]}
    raw = pickle.dumps(batch, protocol=2)
    with pytest.raises(DataError, match="data_batch_2.*truncated or corrupt"):
        parse_cifar_pickle(raw[: len(raw) // 2], "data_batch_2", ("labels",))


def test_cifar_pickle_without_labels_is_reported():
    raw = pickle.dumps({b"data": np.zeros((1, 3072), np.uint8)}, protocol=2)
    with pytest.raises(DataError, match="test_batch.*no 'labels' entry"):
        parse_cifar_pickle(raw, "test_batch", ("labels",))


def test_cifar_pickle_with_wrong_data_shape_is_reported():
    raw = pickle.dumps({b"data": np.zeros((1, 100), np.uint8), b"labels": [0]}, protocol=2)
    with pytest.raises(DataError, match=r"\(N, 3072\)"):
        parse_cifar_pickle(raw, "test_batch", ("labels",))


def test_tar_members_are_read_by_name(tmp_path):
    path = tmp_path / "a.tar.gz"
    path.write_bytes(FakeData.tar_gz({"d/x": b"1", "d/y": gzip.compress(b"2"), "d/z": b"3"}))
    assert read_tar_members(path, ["d/y", "d/x"]) == {"d/y": b"2", "d/x": b"1"}


def test_tar_without_a_member_names_what_is_missing(tmp_path):
    path = tmp_path / "a.tar.gz"
    path.write_bytes(FakeData.tar_gz({"d/x": b"1"}))
    with pytest.raises(DataError, match=r"a\.tar\.gz: the archive lacks d/test_batch"):
        read_tar_members(path, ["d/x", "d/test_batch"])


def test_truncated_tar_is_reported(tmp_path):
    path = tmp_path / "a.tar.gz"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = np.random.default_rng(0).bytes(200_000)
        info = tarfile.TarInfo("d/x")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue()[:50_000])
    with pytest.raises(DataError, match=r"a\.tar\.gz.*truncated or corrupt"):
        read_tar_members(path, ["d/x"])
