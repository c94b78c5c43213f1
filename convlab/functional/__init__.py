"""Stateless math: each operation is a pair, `op(...) -> (y, cache)` and `op_backward(dy, cache)`."""

from .activation import (
    add,
    leaky_relu,
    leaky_relu_backward,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    tanh,
    tanh_backward,
)
from .conv import col2im, conv2d, conv2d_backward, conv_output_size, im2col
from .dropout import dropout, dropout_backward
from .linear import flatten, flatten_backward, linear, linear_backward
from .loss import log_softmax, softmax, softmax_cross_entropy, softmax_cross_entropy_backward
from .norm import batch_norm, batch_norm_backward
from .pool import (
    adaptive_avg_pool2d,
    adaptive_avg_pool2d_backward,
    avg_pool2d,
    avg_pool2d_backward,
    global_avg_pool2d,
    global_avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
    pool_output_size,
)

__all__ = [name for name in dir() if not name.startswith("_")]
