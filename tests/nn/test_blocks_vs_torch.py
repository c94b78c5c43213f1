"""Every block agrees with a PyTorch twin of the same structure on 50 seeded random configurations.

The twins (tests/torch_reference.py) are written from torch.nn with the same names, so convlab's
state_dict loads into them strictly; outputs, input gradients, every parameter gradient and the
batch-norm buffers after the pass must match in float32 to a norm-relative error of 1e-4.
"""

import numpy as np
import pytest

pytest.importorskip("torch")

from convlab import backend, nn  # noqa: E402
from tests import torch_reference as twins  # noqa: E402
from tests.agreement import BLOCK_CASES, image_batch  # noqa: E402
from tests.gradcheck import randomize_batch_norm  # noqa: E402

SEEDS = range(50)


@pytest.mark.parametrize("block", BLOCK_CASES)
def test_block_matches_pytorch_on_random_configurations(block):
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        backend.manual_seed(seed)
        case = BLOCK_CASES[block](rng)
        randomize_batch_norm(case.model, rng)
        what = case.what
        if rng.random() < 0.3:
            case.model.eval()
            what += " in eval mode"
        twins.assert_same_as_torch(case.model, case.twin(), case.x, rng,
                                   f"seed {seed}, {what} on {case.x.shape}")


def test_dense_layer_dropout_is_the_identity_in_eval_mode():
    rng = np.random.default_rng(0)
    model = nn.DenseLayer(3, 2, 2, drop_rate=0.5).eval()
    randomize_batch_norm(model, rng)
    twins.assert_same_as_torch(model, twins.DenseLayer(3, 2, 2), image_batch(rng, 3), rng,
                               "DenseLayer(drop_rate=0.5) in eval mode")
