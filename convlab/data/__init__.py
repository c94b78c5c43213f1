"""Data sets, augmentation and batch loading for convlab.

    from convlab import data
    train, val = data.get("cifar10", "train").split_validation(5000, seed=0)
    aug = data.Compose([data.RandomCrop(32, padding=4), data.RandomHorizontalFlip()])
    for x, y in data.DataLoader(train, 128, augment=aug, seed=0):
        ...  # x float32 (128, 3, 32, 32) normalised, y int64, both on the backend's device
"""

from convlab.data.augment import (
    Compose,
    Cutout,
    GaussianNoise,
    Normalize,
    RandomAffine,
    RandomCrop,
    RandomHorizontalFlip,
    Transform,
)
from convlab.data.datasets import CIFAR10, CIFAR100, MNIST, FashionMNIST, ImageDataset, get, names
from convlab.data.errors import CacheWarning, DataError, DataNotFoundError, DownloadError
from convlab.data.loader import DataLoader
from convlab.data.locations import cache_dir, data_root

__all__ = [
    "CIFAR10", "CIFAR100", "MNIST", "CacheWarning", "Compose", "Cutout", "DataError", "DataLoader",
    "DataNotFoundError", "DownloadError", "FashionMNIST", "GaussianNoise", "ImageDataset", "Normalize",
    "RandomAffine", "RandomCrop", "RandomHorizontalFlip", "Transform", "cache_dir", "data_root", "get",
    "names",
]
