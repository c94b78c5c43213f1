"""Fixtures for the command-line tests: a tiny MNIST-format data root and a way to run `convlab`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train.tiny_data import write_idx_mnist

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """A data root whose mnist/ holds tiny, learnable IDX files (256 train, 64 test images)."""
    return write_idx_mnist(tmp_path_factory.mktemp("data"), n_train=256, n_test=64)


@pytest.fixture
def cli_env(tmp_path):
    env = dict(os.environ, CONVLAB_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1",
               CONVLAB_DEVICE="cpu", PYTHONPATH=str(REPO))
    env.pop("CONVLAB_DATA", None)
    return env


def run_cli(args, env, **kwargs):
    """Run `python -m convlab.cli ARGS` as a separate process; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "convlab.cli", *map(str, args)], env=env,
                          capture_output=True,
                          text=True, timeout=120, **kwargs)
