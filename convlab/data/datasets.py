"""The data sets: MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 as uint8 arrays in host memory.

A data set is found in the data root (see `locations.data_root`), in any official layout, else
downloaded; parsed once; and cached in HDF5 (see `cache`). `ImageDataset` is the common container:
`images` (N, C, H, W) uint8, `labels` (N,) int64, `classes`, and the per-channel `mean` / `std` of
the training images scaled to [0, 1] (the published normalisation constants).

Validation data is carved out of a training split with `split_validation(fraction_or_count, seed)`;
a smaller training set with `subset(n, seed)`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convlab.data import cache as _cache
from convlab.data.download import download_file, urls_for
from convlab.data.errors import DataError, DataNotFoundError, DownloadError
from convlab.data.formats import (
    check_labels,
    parse_cifar_binary,
    parse_cifar_pickle,
    parse_idx,
    read_files,
    read_tar_members,
)
from convlab.data.locations import cache_dir, data_root, is_writable

SPLITS = ("train", "test")


class ImageDataset:
    """An image-classification data set in host memory.

    images: (N, C, H, W) uint8.  labels: (N,) int64 in 0..len(classes)-1.
    mean, std: per-channel normalisation constants for images scaled to [0, 1].
    indices: for a subset, the positions of its samples in the data set it was taken from.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes: Sequence[str],
                 mean: Sequence[float], std: Sequence[float], *, name: str = "dataset", split: str = "train",
                 coarse_labels: np.ndarray | None = None, coarse_classes: Sequence[str] | None = None,
                 indices: np.ndarray | None = None):
        images, labels = np.asarray(images), np.asarray(labels)
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"{name}: images must be a uint8 array (N, C, H, W), got {images.dtype} "
                             f"{images.shape}")
        if labels.shape != (len(images),):
            raise ValueError(f"{name}: expected {len(images)} labels (one per image), got shape "
                             f"{labels.shape}")
        if len(mean) != images.shape[1] or len(std) != images.shape[1]:
            raise ValueError(f"{name}: mean and std need one value per channel ({images.shape[1]}), "
                             f"got {len(mean)} and {len(std)}")
        self.images = images
        self.labels = labels.astype(np.int64, copy=False)
        self.classes = tuple(classes)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.name = name
        self.split = split
        self.coarse_labels = coarse_labels
        self.coarse_classes = tuple(coarse_classes) if coarse_classes is not None else None
        self.indices = indices

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        """Sample `i`: its image (C, H, W) uint8 and its label."""
        return self.images[i], int(self.labels[i])

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, n={len(self)}, "
                f"shape={self.shape}, classes={len(self.classes)})")

    @property
    def shape(self) -> tuple[int, int, int]:
        """The shape of one image: (C, H, W)."""
        return tuple(self.images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def take(self, indices: Sequence[int], split: str | None = None) -> ImageDataset:
        """A new data set of the samples at `indices` (copied), in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        parent = self.indices if self.indices is not None else np.arange(len(self))
        return ImageDataset(self.images[indices], self.labels[indices], self.classes, self.mean, self.std,
                            name=self.name, split=split or self.split,
                            coarse_labels=None if self.coarse_labels is None else self.coarse_labels[indices],
                            coarse_classes=self.coarse_classes, indices=parent[indices])

    def subset(self, n: int, seed: int | None = None) -> ImageDataset:
        """The first `n` samples, or with `seed` a seeded random `n` of them (kept in data-set order)."""
        n = int(n)
        if not 0 < n <= len(self):
            raise ValueError(f"{self.name} {self.split}: subset size must be 1..{len(self)}, got {n}")
        if seed is None:
            return self.take(np.arange(n))
        return self.take(np.sort(np.random.default_rng(seed).choice(len(self), n, replace=False)))

    def split_validation(self, val: float | int, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
        """Split into (train, validation), disjoint and together the whole data set.

        `val`: a fraction in (0, 1) or a number of samples for the validation part, chosen at random
        with `seed` (the same seed always gives the same split). Both parts keep data-set order.
        """
        n = len(self)
        count = round(val * n) if isinstance(val, float) else int(val)
        if isinstance(val, float) and not 0 < val < 1 or not 0 < count < n:
            raise ValueError(f"{self.name} {self.split}: validation size must be a fraction in (0, 1) or a "
                             f"count in 1..{n - 1}, got {val!r}")
        order = np.random.default_rng(seed).permutation(n)
        return self.take(np.sort(order[count:]), "train"), self.take(np.sort(order[:count]), "val")


# --- the official data sets -----------------------------------------------------------------------------


def _find(folder: Path, name: str) -> Path | None:
    """`folder/name`, or for "x.gz" also the unpacked `folder/x`, whichever exists."""
    for candidate in (folder / name, folder / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class _Found:
    """Files that hold one split, and how to parse them into arrays."""

    paths: tuple[Path, ...]
    read: Callable[[], dict[str, np.ndarray]]


class _OfficialDataset(ImageDataset):
    key = ""  # registry name, also the cache file's stem
    title = ""
    classes: tuple[str, ...] = ()
    mean_std: tuple[tuple[float, ...], tuple[float, ...]] = ((), ())
    mirrors: tuple[str, ...] = ()

    def __init__(self, split: str = "train", root: str | os.PathLike | None = None, *, download: bool = True,
                 cache: bool | str | os.PathLike = True, progress: bool | None = None):
        """Load `split` ("train" or "test") from `root` (default: `$CONVLAB_DATA`, else `datasets/`).

        download: fetch the official files when they are not there.  cache: True (the data root, or
        `$CONVLAB_CACHE` / `~/.cache/convlab` when the root is read-only), a folder, or False.
        progress: show a download progress bar (None: when stderr is a terminal).
        """
        if split not in SPLITS:
            raise ValueError(f"{self.title}: split must be one of {SPLITS}, got {split!r} (for validation "
                             "data use split_validation on the train split)")
        root = data_root(root)
        found = self._locate(split, root)
        if found is None and download:
            if not is_writable(root):
                raise DataNotFoundError(f"{self._missing_message(split, root, True)} {root} is read-only, so "
                                        "nothing can be downloaded into it.")
            self._download(split, root, progress)
            found = self._locate(split, root)
        if found is None:
            raise DataNotFoundError(self._missing_message(split, root, download))
        if cache is False:
            arrays = found.read()
        else:
            folders = [root, cache_dir()] if cache is True else [Path(cache)]
            arrays = _cache.load_or_build(f"{self.key}-{split}", folders, found.paths, self.classes,
                                          found.read)
        coarse = arrays.get("coarse_labels")
        coarse_classes = getattr(self, "coarse_class_names", None) if coarse is not None else None
        super().__init__(arrays["images"], arrays["labels"], self.classes, *self.mean_std, name=self.key,
                         split=split, coarse_labels=coarse, coarse_classes=coarse_classes)

    def _locate(self, split: str, root: Path) -> _Found | None:
        raise NotImplementedError

    def _download(self, split: str, root: Path, progress: bool | None) -> None:
        raise NotImplementedError

    def _missing_message(self, split: str, root: Path, download: bool) -> str:
        raise NotImplementedError


class _IdxDataset(_OfficialDataset):
    """MNIST-style data sets: four gzipped IDX files in `<root>/<folder>/`."""

    folder = ""
    files: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {}  # split -> ((images, md5), (labels, md5))
    system_dirs: tuple[str, ...] = ()

    def _dirs(self, root: Path) -> list[Path]:
        return [root / self.folder, *map(Path, self.system_dirs)]

    def _locate(self, split, root):
        for folder in self._dirs(root):
            paths = [_find(folder, name) for name, _ in self.files[split]]
            if all(paths):
                return _Found(tuple(paths), lambda paths=paths: self._parse(*paths))
        return None

    def _parse(self, images_path: Path, labels_path: Path) -> dict[str, np.ndarray]:
        raw_images, raw_labels = read_files([images_path, labels_path])
        images = parse_idx(raw_images, str(images_path), 3)
        labels = parse_idx(raw_labels, str(labels_path), 1)
        if images.shape[1:] != (28, 28):
            raise DataError(f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
        if len(images) != len(labels):
            raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} "
                            "labels; the two files must come from the same split")
        labels = check_labels(labels, len(self.classes), str(labels_path))
        return {"images": images[:, None], "labels": labels}  # (N, 1, 28, 28)

    def _download(self, split, root, progress):
        folder = root / self.folder
        for name, md5 in self.files[split]:
            if _find(folder, name) is None:
                try:
                    download_file(urls_for(name, self.mirrors), folder / name, md5, progress)
                except DownloadError as e:
                    raise DataNotFoundError(f"{self._missing_message(split, root, True)} The download "
                                            f"failed: {e}") from e

    def _missing_message(self, split, root, download):
        names = [name for name, _ in self.files[split]]
        dirs = self._dirs(root)
        empty = " (the folder exists but is empty)" if dirs[0].is_dir() and not any(dirs[0].iterdir()) else ""
        urls = ", ".join(urls_for(n, self.mirrors)[0] for n in names)
        return (f"{self.title} {split} data not found: looked for {' and '.join(names)} (gzipped or not) in "
                f"{', '.join(map(str, dirs))}{empty}. Put the official files ({urls}) in {dirs[0]}, or point "
                f"CONVLAB_DATA (or root=) at a folder that has {self.folder}/ with them"
                + ("." if download else "; downloading is off (download=False)."))


class MNIST(_IdxDataset):
    """MNIST handwritten digits: 60,000 train and 10,000 test images, 1x28x28, 10 classes."""

    key, title, folder = "mnist", "MNIST", "mnist"
    classes = tuple(str(d) for d in range(10))
    mean_std = ((0.1307,), (0.3081,))
    mirrors = ("https://ossci-datasets.s3.amazonaws.com/mnist/",)
    files = {
        "train": (("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
                  ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432")),
        "test": (("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
                 ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c")),
    }


class FashionMNIST(_IdxDataset):
    """Fashion-MNIST (Zalando article images): 60,000 train and 10,000 test images, 1x28x28, 10 classes.

    Besides `<root>/fashion-mnist/` it is found where Debian's `dataset-fashion-mnist` installs it.
    """

    key, title, folder = "fashion-mnist", "Fashion-MNIST", "fashion-mnist"
    classes = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot")
    mean_std = ((0.2860,), (0.3530,))
    mirrors = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
    files = {
        "train": (("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
                  ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe")),
        "test": (("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
                 ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310")),
    }
    system_dirs = ("/usr/share/datasets/fashion-mnist",)


@dataclass(frozen=True)
class _CifarLayout:
    """One official way CIFAR files sit on disk: an extracted folder, or an archive holding that folder."""

    kind: str  # "binary" | "python"
    folder: str
    members: dict[str, tuple[str, ...]]  # split -> file names inside `folder`
    archive: str | None = None  # archive name in the data root; None: the extracted folder


class _CifarDataset(_OfficialDataset):
    """CIFAR data sets: extracted folders (binary `.bin`/`.bin.gz`, or python pickles) or their archives."""

    layouts: tuple[_CifarLayout, ...] = ()
    download_archive: tuple[str, str] = ("", "")  # (file name, md5), the binary archive
    label_bytes = 1

    def _locate(self, split, root):
        for layout in self.layouts:
            if layout.archive is None:
                folder = root / layout.folder
                paths = [_find(folder, m + ".gz") for m in layout.members[split]]
                if all(paths):
                    return _Found(tuple(paths), lambda lay=layout, p=paths: self._parse(lay, read_files(p),
                                                                                         list(map(str, p))))
            elif (root / layout.archive).is_file():
                archive = root / layout.archive
                names = [f"{layout.folder}/{m}" for m in layout.members[split]]
                return _Found((archive,), lambda lay=layout, a=archive, n=names: self._parse(
                    lay, list(read_tar_members(a, n).values()), [f"{a}:{m}" for m in n]))
        return None

    def _parse(self, layout: _CifarLayout, raws: list[bytes], sources: list[str]) -> dict[str, np.ndarray]:
        images, labels, coarse = [], [], []
        for raw, source in zip(raws, sources):
            if layout.kind == "binary":
                im, lab = parse_cifar_binary(raw, source, self.label_bytes)
                lab = lab.T[::-1]  # fine first, then coarse (CIFAR-100 records store coarse, fine)
            else:
                im, *lab = parse_cifar_pickle(raw, source, self.label_keys)
            images.append(im)
            labels.append(check_labels(np.asarray(lab[0]), len(self.classes), source))
            if len(lab) > 1:
                coarse.append(check_labels(np.asarray(lab[1]), len(self.coarse_class_names), source,
                                           "coarse label"))
        arrays = {"images": np.concatenate(images), "labels": np.concatenate(labels)}
        if coarse:
            arrays["coarse_labels"] = np.concatenate(coarse)
        return arrays

    def _download(self, split, root, progress):
        name, md5 = self.download_archive
        try:
            download_file(urls_for(name, self.mirrors), root / name, md5, progress)
        except DownloadError as e:
            raise DataNotFoundError(f"{self._missing_message(split, root, True)} The download failed: "
                                    f"{e}") from e

    def _missing_message(self, split, root, download):
        places = []
        for layout in self.layouts:
            if layout.archive is None:
                folder = root / layout.folder
                state = ""
                if folder.is_dir():
                    present = {p.name for p in folder.iterdir()}
                    missing = [m for m in layout.members[split]
                               if m not in present and m + ".gz" not in present]
                    state = f" [the folder exists but lacks {', '.join(missing)}]"
                places.append(f"{folder}/ ({', '.join(layout.members[split])}){state}")
            else:
                places.append(str(root / layout.archive))
        name, _ = self.download_archive
        return (f"{self.title} {split} data not found; looked for " + "; ".join(places) + ". Put the "
                f"official archive ({urls_for(name, self.mirrors)[0]}) in {root}, or extract it there, or "
                "point CONVLAB_DATA (or root=) at a folder that holds it"
                + ("." if download else "; downloading is off (download=False)."))


_TORONTO = ("https://www.cs.toronto.edu/~kriz/",)


class CIFAR10(_CifarDataset):
    """CIFAR-10: 50,000 train and 10,000 test colour images, 3x32x32, 10 classes."""

    key, title = "cifar10", "CIFAR-10"
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    # std is the true per-channel std of the training set (not the often-copied 0.2023, 0.1994, 0.2010).
    mean_std = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    mirrors = _TORONTO
    label_keys = ("labels",)
    _train = tuple(f"data_batch_{i}" for i in range(1, 6))
    layouts = (
        _CifarLayout("binary", "cifar-10-batches-bin",
                     {"train": tuple(f"{m}.bin" for m in _train), "test": ("test_batch.bin",)}),
        _CifarLayout("python", "cifar-10-batches-py", {"train": _train, "test": ("test_batch",)}),
        _CifarLayout("binary", "cifar-10-batches-bin",
                     {"train": tuple(f"{m}.bin" for m in _train), "test": ("test_batch.bin",)},
                     "cifar-10-binary.tar.gz"),
        _CifarLayout("python", "cifar-10-batches-py", {"train": _train, "test": ("test_batch",)},
                     "cifar-10-python.tar.gz"),
    )
    # The binary archive is downloaded: it parses faster than the pickles and unpickles nothing.
    download_archive = ("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530")


class CIFAR100(_CifarDataset):
    """CIFAR-100: 50,000 train and 10,000 test colour images, 3x32x32, 100 fine classes in 20 coarse ones.

    `labels` are the fine labels; `coarse_labels` / `coarse_classes` hold the superclasses.
    """

    key, title = "cifar100", "CIFAR-100"
    classes = tuple("""
        apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly
        camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup
        dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower
        leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid
        otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray
        road rocket rose sea seal shark shrew skunk skyscraper snail snake spider squirrel streetcar
        sunflower sweet_pepper table tank telephone television tiger tractor train trout tulip turtle
        wardrobe whale willow_tree wolf woman worm
    """.split())
    coarse_class_names = tuple("""
        aquatic_mammals fish flowers food_containers fruit_and_vegetables household_electrical_devices
        household_furniture insects large_carnivores large_man-made_outdoor_things
        large_natural_outdoor_scenes large_omnivores_and_herbivores medium_mammals non-insect_invertebrates
        people reptiles small_mammals trees vehicles_1 vehicles_2
    """.split())
    mean_std = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
    mirrors = _TORONTO
    label_bytes = 2
    label_keys = ("fine_labels", "coarse_labels")
    layouts = (
        _CifarLayout("binary", "cifar-100-binary", {"train": ("train.bin",), "test": ("test.bin",)}),
        _CifarLayout("python", "cifar-100-python", {"train": ("train",), "test": ("test",)}),
        _CifarLayout("binary", "cifar-100-binary", {"train": ("train.bin",), "test": ("test.bin",)},
                     "cifar-100-binary.tar.gz"),
        _CifarLayout("python", "cifar-100-python", {"train": ("train",), "test": ("test",)},
                     "cifar-100-python.tar.gz"),
    )
    download_archive = ("cifar-100-binary.tar.gz", "03b5dce01913d631647c71ecec9e9cb8")


# --- the registry ---------------------------------------------------------------------------------------

_REGISTRY: dict[str, type[_OfficialDataset]] = {
    "mnist": MNIST, "fashion-mnist": FashionMNIST, "cifar10": CIFAR10, "cifar100": CIFAR100,
}
_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "cifar-10": "cifar10",
            "cifar_10": "cifar10", "cifar-100": "cifar100", "cifar_100": "cifar100"}


def names() -> list[str]:
    """The registered data set names, for `get`."""
    return list(_REGISTRY)


def get(name: str, split: str = "train", root: str | os.PathLike | None = None, **kwargs) -> ImageDataset:
    """Load data set `name` (see `names()`; "fashion_mnist" also works) split `split` from `root`.

    Further keyword arguments (download, cache, progress) go to the data set's constructor.
    """
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise ValueError(f"unknown data set {name!r}; expected one of {names()} (or 'fashion_mnist')")
    return _REGISTRY[key](split, root, **kwargs)
