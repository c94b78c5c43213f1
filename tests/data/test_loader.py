"""The loader: every sample once per epoch, seeded orders, ready-to-use batches, and exact resumption."""

from __future__ import annotations

import numpy as np
import pytest

from convlab.data import Compose, DataLoader, ImageDataset, Normalize, RandomCrop, RandomHorizontalFlip

from .conftest import FakeData


def toy(n=103, c=3, hw=6) -> ImageDataset:
    """Sample i has pixel (0, 0, 0) == i, so batches reveal which samples they hold."""
    images = FakeData.images(n, (c, hw, hw), labels=np.arange(n))
    return ImageDataset(images, np.arange(n) % 10, list("0123456789"), [0.5] * c, [0.25] * c, name="toy")


def ids(x) -> list[int]:
    """Sample ids of a normalised batch (undo normalisation of pixel (0, 0, 0))."""
    return np.rint((x[:, 0, 0, 0] * 0.25 + 0.5) * 255).astype(int).tolist()


def epoch_ids(loader) -> list[int]:
    return [i for x, _ in loader for i in ids(x)]


def test_batches_are_float32_in_the_unit_range_then_normalised():
    ds = toy()
    x, y = next(iter(DataLoader(ds, 16, shuffle=False)))
    expected = (ds.images[:16].astype(np.float32) / 255 - 0.5) / 0.25
    assert x.dtype == np.float32 and x.shape == (16, 3, 6, 6) and np.allclose(x, expected, atol=1e-6)
    assert y.dtype == np.int64 and y.tolist() == ds.labels[:16].tolist()


def test_normalize_false_gives_unit_range():
    x, _ = next(iter(DataLoader(toy(), 8, shuffle=False, normalize=False)))
    assert x.min() >= 0 and x.max() <= 1 and np.allclose(x, toy().images[:8] / 255, atol=1e-6)


def test_each_epoch_covers_every_sample_exactly_once():
    loader = DataLoader(toy(), 10)
    for _ in range(3):
        assert sorted(epoch_ids(loader)) == list(range(103))


def test_labels_travel_with_their_images():
    ds = toy()
    for x, y in DataLoader(ds, 16, seed=3):
        assert y.tolist() == [ds.labels[i] for i in ids(x)]


def test_each_epoch_has_a_different_order():
    loader = DataLoader(toy(), 10)
    a, b = epoch_ids(loader), epoch_ids(loader)
    assert a != b and loader.epoch == 2


def test_same_seed_same_order_other_seed_other_order():
    a = epoch_ids(DataLoader(toy(), 10, seed=7))
    assert a == epoch_ids(DataLoader(toy(), 10, seed=7)) != epoch_ids(DataLoader(toy(), 10, seed=8))


def test_no_shuffle_keeps_data_set_order():
    assert epoch_ids(DataLoader(toy(), 10, shuffle=False)) == list(range(103))


@pytest.mark.parametrize("drop_last, batches, last", [(False, 11, 3), (True, 10, 10)])
def test_drop_last_keeps_or_drops_the_partial_batch(drop_last, batches, last):
    loader = DataLoader(toy(), 10, drop_last=drop_last)
    sizes = [len(y) for _, y in loader]
    assert len(loader) == batches == len(sizes) and sizes[-1] == last and set(sizes[:-1]) == {10}


def test_drop_last_with_too_few_samples_is_an_error():
    with pytest.raises(ValueError, match="make no batch of 200 with drop_last=True"):
        DataLoader(toy(), 200, drop_last=True)


def test_set_epoch_reproduces_that_epochs_order():
    loader = DataLoader(toy(), 10, seed=1)
    first, second = epoch_ids(loader), epoch_ids(loader)
    loader.set_epoch(1)
    assert epoch_ids(loader) == second
    loader.set_epoch(0)
    assert epoch_ids(loader) == first


def test_state_dict_resumes_mid_epoch_with_the_same_batches():
    aug = Compose([RandomCrop(6, padding=2), RandomHorizontalFlip()])
    loader = DataLoader(toy(), 10, augment=aug, seed=5)
    epoch_ids(loader)  # epoch 0
    it = iter(loader)
    [next(it) for _ in range(4)]  # 4 batches into epoch 1
    state = loader.state_dict()
    rest = [x for x, _ in it] + [x for x, _ in loader]  # rest of epoch 1, then epoch 2

    resumed = DataLoader(toy(), 10, augment=aug, seed=999)  # seed comes from the state
    resumed.load_state_dict(state)
    again = [x for x, _ in resumed] + [x for x, _ in resumed]
    assert state["epoch"] == 1 and state["batch"] == 4 and len(again) == len(rest) == 7 + 11
    assert all(np.array_equal(a, b) for a, b in zip(again, rest))


def test_state_from_a_differently_built_loader_is_refused():
    state = DataLoader(toy(), 10).state_dict()
    with pytest.raises(ValueError, match="batch_size=10 but this loader has 20"):
        DataLoader(toy(), 20).load_state_dict(state)


def test_augmentation_is_applied_and_seeded():
    aug = RandomHorizontalFlip(1.0)
    x, _ = next(iter(DataLoader(toy(), 8, shuffle=False, augment=aug, normalize=False)))
    assert np.allclose(x, toy().images[:8, :, :, ::-1] / 255, atol=1e-6)
    crop = RandomCrop(6, padding=3)
    a = [x for x, _ in DataLoader(toy(), 8, augment=crop, seed=2)]
    b = [x for x, _ in DataLoader(toy(), 8, augment=crop, seed=2)]
    c = [x for x, _ in DataLoader(toy(), 8, augment=crop, seed=3)]
    assert all(np.array_equal(p, q) for p, q in zip(a, b)) and not np.array_equal(a[0], c[0])


def test_normalising_twice_is_refused():
    with pytest.raises(ValueError, match="already contains Normalize"):
        DataLoader(toy(), 8, augment=Compose([Normalize([0.5] * 3, [0.2] * 3)]))
    DataLoader(toy(), 8, augment=Normalize([0.5] * 3, [0.2] * 3), normalize=False)


def test_whole_uint8_data_set_stays_on_the_device_on_cpu():
    ds = toy()
    loader = DataLoader(ds, 8, device="cpu")
    assert loader.on_device and loader._images is ds.images and isinstance(next(iter(loader))[0], np.ndarray)


def test_a_loop_that_stops_early_continues_where_it_stopped():
    loader = DataLoader(toy(), 10, seed=0)
    full = DataLoader(toy(), 10, seed=0)
    expected = epoch_ids(full)
    it = iter(loader)
    head = [i for _ in range(3) for i in ids(next(it)[0])]
    assert head + epoch_ids(loader) == expected and loader.epoch == 1


def test_unknown_device_is_rejected():
    with pytest.raises(ValueError, match="device must be None, 'cpu' or 'gpu'"):
        DataLoader(toy(), 8, device="tpu")
