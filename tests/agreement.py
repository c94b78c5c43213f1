"""The agreement tests' shared half: seeded random configurations of every layer and block, and
running a convlab module forward and backward and comparing its results (convlab against PyTorch
on the CPU, and CuPy against NumPy on the GPU). Nothing here needs torch.

Each maker takes a NumPy Generator and returns a `Case`: a description naming the configuration,
the convlab module, a float32 input and a zero-argument builder of the PyTorch twin (torch is
imported only when a twin is built, so the cases work without it).
"""

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from convlab import backend, nn
from tests.gradcheck import relative_error

AGREEMENT_TOL = 1e-4  # float32, norm-relative


@dataclass
class Case:
    what: str
    model: nn.Module
    x: np.ndarray
    twin: Callable


def torch_nn():
    import torch.nn

    return torch.nn


def twins():
    from tests import torch_reference

    return torch_reference


def randint(rng, low, high):
    """An int in [low, high] inclusive."""
    return int(rng.integers(low, high + 1))


def normal(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def image_batch(rng, channels, low=4, high=8, batch=(1, 3)):
    return normal(rng, (randint(rng, *batch), channels, randint(rng, low, high), randint(rng, low, high)))


# -- layers ----------------------------------------------------------------------------------
def conv2d_case(rng):
    kind = rng.choice(["dense", "grouped", "depthwise"])
    if kind == "dense":
        groups, cin, cout = 1, randint(rng, 1, 5), randint(rng, 1, 6)
    elif kind == "grouped":
        groups = randint(rng, 2, 3)
        cin, cout = groups * randint(rng, 1, 2), groups * randint(rng, 1, 3)
    else:
        cin = randint(rng, 1, 4)
        groups, cout = cin, cin * randint(rng, 1, 2)
    kernel = (randint(rng, 1, 4), randint(rng, 1, 4))
    dilation = (randint(rng, 1, 2), randint(rng, 1, 2))
    stride = (randint(rng, 1, 3), randint(rng, 1, 3))
    style = rng.choice(["int", "pair", "same", "valid"])
    if style == "int":
        padding = randint(rng, 0, 2)
    elif style == "pair":
        padding = (randint(rng, 0, 2), randint(rng, 0, 2))
    else:
        padding = str(style)
        if style == "same":
            stride = (1, 1)
    pads = {"int": (padding, padding), "pair": padding}.get(style, (0, 0))
    extent = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
    h, w = (max(1, e - 2 * p + randint(rng, 0, 5)) for e, p in zip(extent, pads))
    kw = dict(kernel_size=kernel, stride=stride, padding=padding, dilation=dilation, groups=groups,
              bias=bool(rng.random() < 0.5))
    x = normal(rng, (randint(rng, 1, 3), cin, h, w))
    return Case(f"Conv2d({cin}, {cout}, {kw}) on {x.shape}", nn.Conv2d(cin, cout, **kw), x,
                lambda: torch_nn().Conv2d(cin, cout, **kw))


def pool_geometry(rng):
    kernel = (randint(rng, 1, 4), randint(rng, 1, 4))
    stride = None if rng.random() < 0.3 else (randint(rng, 1, 3), randint(rng, 1, 3))
    padding = (randint(rng, 0, kernel[0] // 2), randint(rng, 0, kernel[1] // 2))
    h, w = (max(1, k - 2 * p) + randint(rng, 0, 6) for k, p in zip(kernel, padding))
    ceil_mode = bool(rng.random() < 0.5)
    return dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode), (h, w)


def max_pool2d_case(rng):
    kw, (h, w) = pool_geometry(rng)
    x = normal(rng, (randint(rng, 1, 3), randint(rng, 1, 3), h, w))
    return Case(f"MaxPool2d({kw}) on {x.shape}", nn.MaxPool2d(**kw), x, lambda: torch_nn().MaxPool2d(**kw))


def avg_pool2d_case(rng):
    kw, (h, w) = pool_geometry(rng)
    kw["count_include_pad"] = bool(rng.random() < 0.5)
    x = normal(rng, (randint(rng, 1, 3), randint(rng, 1, 3), h, w))
    return Case(f"AvgPool2d({kw}) on {x.shape}", nn.AvgPool2d(**kw), x, lambda: torch_nn().AvgPool2d(**kw))


def adaptive_avg_pool2d_case(rng):
    out = (randint(rng, 1, 3), randint(rng, 1, 3))
    x = normal(rng, (randint(rng, 1, 3), randint(rng, 1, 4), out[0] * randint(rng, 1, 4),
                     out[1] * randint(rng, 1, 4)))
    return Case(f"AdaptiveAvgPool2d({out}) on {x.shape}", nn.AdaptiveAvgPool2d(out), x,
                lambda: torch_nn().AdaptiveAvgPool2d(out))


def global_avg_pool2d_case(rng):
    x = normal(rng, (randint(rng, 1, 3), randint(rng, 1, 5), randint(rng, 1, 7), randint(rng, 1, 7)))
    return Case(f"GlobalAvgPool2d on {x.shape}", nn.GlobalAvgPool2d(), x,
                lambda: torch_nn().Sequential(torch_nn().AdaptiveAvgPool2d(1), torch_nn().Flatten()))


def linear_case(rng):
    fin, fout, bias = randint(rng, 1, 9), randint(rng, 1, 9), bool(rng.random() < 0.5)
    x = normal(rng, (randint(rng, 1, 5), fin))
    return Case(f"Linear({fin}, {fout}, bias={bias}) on {x.shape}", nn.Linear(fin, fout, bias), x,
                lambda: torch_nn().Linear(fin, fout, bias))


def activation_case(rng):
    shape = (randint(rng, 1, 3), randint(rng, 1, 4)) + ((randint(rng, 1, 5), randint(rng, 1, 5))
                                                        if rng.random() < 0.5 else ())
    # Up to |x| ≈ 10: beyond that float32 sigmoid/tanh saturate and 1 − y² keeps no significant digits.
    x = normal(rng, shape, scale=float(rng.choice([0.1, 1.0, 3.0])))
    kind = str(rng.choice(["ReLU", "LeakyReLU", "Sigmoid", "Tanh"]))
    if kind == "LeakyReLU":
        slope = float(rng.uniform(0.0, 0.5))
        return Case(f"LeakyReLU({slope}) on {x.shape}", nn.LeakyReLU(slope), x,
                    lambda: torch_nn().LeakyReLU(slope))
    return Case(f"{kind} on {x.shape}", getattr(nn, kind)(), x, lambda: getattr(torch_nn(), kind)())


def dropout_case(rng):
    x = normal(rng, (randint(rng, 1, 4), randint(rng, 1, 6), randint(rng, 1, 4), randint(rng, 1, 4)))
    if rng.random() < 0.5:
        p = float(rng.uniform(0.0, 0.9))
        return Case(f"Dropout({p}) in eval mode on {x.shape}", nn.Dropout(p).eval(), x,
                    lambda: torch_nn().Dropout(p).eval())
    return Case(f"Dropout(0.0) in train mode on {x.shape}", nn.Dropout(0.0), x,
                lambda: torch_nn().Dropout(0.0))


def flatten_case(rng):
    x = normal(rng, (randint(rng, 1, 3), randint(rng, 1, 4), randint(rng, 1, 4), randint(rng, 1, 4)))
    start = randint(rng, 1, 3)
    return Case(f"Flatten({start}) on {x.shape}", nn.Flatten(start), x, lambda: torch_nn().Flatten(start))


def identity_case(rng):
    x = normal(rng, (randint(rng, 1, 3), randint(rng, 1, 4), randint(rng, 1, 4), randint(rng, 1, 4)))
    return Case(f"Identity on {x.shape}", nn.Identity(), x, lambda: torch_nn().Identity())


def batch_norm_case(rng):
    dims = int(rng.choice([2, 4]))
    c = randint(rng, 1, 5)
    kw = dict(eps=float(rng.choice([1e-5, 1e-3])), momentum=[0.1, 0.5, None][randint(rng, 0, 2)],
              affine=bool(rng.random() < 0.7), track_running_stats=bool(rng.random() < 0.8))
    # At least 3 values per channel: with 2 the normalised output is ±1 and dx is pure rounding noise.
    shape = (randint(rng, 3, 6), c) if dims == 2 else (randint(rng, 1, 3), c, randint(rng, 2, 4),
                                                      randint(rng, 2, 4))
    layer = "BatchNorm1d" if dims == 2 else "BatchNorm2d"
    x = normal(rng, shape, scale=float(rng.uniform(0.5, 3.0))) + np.float32(rng.normal())
    return Case(f"{layer}({c}, {kw}) on {shape}", getattr(nn, layer)(c, **kw), x,
                lambda: getattr(torch_nn(), layer)(c, **kw))


LAYER_CASES = {
    "Conv2d": conv2d_case,
    "MaxPool2d": max_pool2d_case,
    "AvgPool2d": avg_pool2d_case,
    "AdaptiveAvgPool2d": adaptive_avg_pool2d_case,
    "GlobalAvgPool2d": global_avg_pool2d_case,
    "Linear": linear_case,
    "activation": activation_case,
    "Dropout": dropout_case,
    "Flatten": flatten_case,
    "Identity": identity_case,
}


# -- blocks ----------------------------------------------------------------------------------
# Batch norm cancels the scale of whatever feeds it. A convolution from a single channel into BN
# therefore has a (near-)zero true gradient for that channel's scale, and float32 leaves only
# rounding noise to compare; likewise a bias followed only by nearly-linear layers and then BN. The
# configurations below give such convolutions at least two input channels and drop such biases.
def basic_conv2d_case(rng):
    cin, cout = randint(rng, 2, 4), randint(rng, 1, 5)
    kw = dict(batch_norm=bool(rng.random() < 0.7), kernel_size=randint(rng, 1, 3), stride=randint(rng, 1, 2),
              padding=randint(rng, 0, 1))
    return Case(f"BasicConv2d({cin}, {cout}, {kw})", nn.BasicConv2d(cin, cout, **kw), image_batch(rng, cin),
                lambda: twins().BasicConv2d(cin, cout, **kw))


def basic_block_case(rng):
    inplanes, stride = randint(rng, 2, 6), randint(rng, 1, 2)
    shortcut = str(rng.choice(["A", "B"]))
    planes = randint(rng, inplanes, 8) if shortcut == "A" else randint(rng, 2, 8)
    kw = dict(stride=stride, shortcut=shortcut, residual=bool(rng.random() < 0.8),
              se_reduction=[None, None, 2, 4][randint(rng, 0, 3)])
    return Case(f"BasicBlock({inplanes}, {planes}, {kw})", nn.BasicBlock(inplanes, planes, **kw),
                image_batch(rng, inplanes), lambda: twins().BasicBlock(inplanes, planes, **kw))


def bottleneck_case(rng):
    planes, stride, groups = randint(rng, 1, 3), randint(rng, 1, 2), randint(rng, 1, 2)
    shortcut = str(rng.choice(["A", "B"]))
    inplanes = randint(rng, 2, planes * 4) if shortcut == "A" else randint(rng, 2, 10)
    base_width = int(rng.choice([32, 64, 128]))
    if int(planes * base_width / 64) * groups < 2:  # the bottleneck width feeds conv3 → bn3
        base_width = 128
    kw = dict(stride=stride, shortcut=shortcut, residual=bool(rng.random() < 0.8), groups=groups,
              base_width=base_width)
    return Case(f"Bottleneck({inplanes}, {planes}, {kw})", nn.Bottleneck(inplanes, planes, **kw),
                image_batch(rng, inplanes), lambda: twins().Bottleneck(inplanes, planes, **kw))


def concat_case(rng):
    c, a, b = randint(rng, 1, 4), randint(rng, 1, 4), randint(rng, 1, 4)

    def branches(lib):
        return OrderedDict(conv=lib.Conv2d(c, a, 3, padding=1), pool=lib.MaxPool2d(3, stride=1, padding=1),
                           seq=lib.Sequential(lib.Conv2d(c, b, 1), lib.Tanh()))

    return Case(f"Concat(conv 3x3 -> {a}, max-pool, 1x1 -> {b} + tanh) on {c} channels",
                nn.Concat(branches(nn)), image_batch(rng, c), lambda: twins().Concat(branches(torch_nn())))


def inception_case(rng):
    c = randint(rng, 2, 5)
    # ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj; a one-channel reduction feeding conv → BN is
    # ill-conditioned in float32 (BN cancels its scale), so the reductions get two channels or more.
    widths = [randint(rng, 2 if i in (1, 3) else 1, 4) for i in range(6)]
    kw = dict(batch_norm=bool(rng.random() < 0.7), branch3_kernel_size=int(rng.choice([3, 5])))
    return Case(f"Inception({c}, {widths}, {kw})", nn.Inception(c, *widths, **kw), image_batch(rng, c),
                lambda: twins().Inception(c, *widths, **kw))


def dense_layer_case(rng):
    c, k, bn_size = randint(rng, 2, 6), randint(rng, 1, 4), randint(rng, 1, 4)
    return Case(f"DenseLayer({c}, growth_rate={k}, bn_size={bn_size})", nn.DenseLayer(c, k, bn_size),
                image_batch(rng, c), lambda: twins().DenseLayer(c, k, bn_size))


def dense_block_case(rng):
    layers, c, k, bn_size = randint(rng, 1, 3), randint(rng, 2, 5), randint(rng, 1, 3), randint(rng, 1, 3)
    return Case(f"DenseBlock({layers}, {c}, growth_rate={k}, bn_size={bn_size})",
                nn.DenseBlock(layers, c, k, bn_size), image_batch(rng, c),
                lambda: twins().DenseBlock(layers, c, k, bn_size))


def transition_case(rng):
    cin, cout = randint(rng, 1, 8), randint(rng, 1, 5)
    return Case(f"Transition({cin}, {cout})", nn.Transition(cin, cout), image_batch(rng, cin),
                lambda: twins().Transition(cin, cout))


def squeeze_excite_case(rng):
    c, reduction = randint(rng, 1, 12), randint(rng, 1, 8)
    return Case(f"SqueezeExcite({c}, reduction={reduction})", nn.SqueezeExcite(c, reduction),
                image_batch(rng, c, low=1), lambda: twins().SqueezeExcite(c, reduction))


def nin_block_case(rng):
    cin, cout, k = randint(rng, 1, 4), randint(rng, 1, 6), randint(rng, 1, 5)
    stride, padding = randint(rng, 1, 3), randint(rng, 0, k // 2)
    return Case(f"NiNBlock({cin}, {cout}, {k}, stride={stride}, padding={padding})",
                nn.NiNBlock(cin, cout, k, stride, padding), image_batch(rng, cin, low=5, high=9),
                lambda: twins().NiNBlock(cin, cout, k, stride, padding))


def depthwise_separable_case(rng):
    cin, cout, stride, k = randint(rng, 2, 6), randint(rng, 1, 6), randint(rng, 1, 2), int(rng.choice([3, 5]))
    return Case(f"DepthwiseSeparableConv({cin}, {cout}, stride={stride}, kernel_size={k})",
                nn.DepthwiseSeparableConv(cin, cout, stride, k), image_batch(rng, cin),
                lambda: twins().DepthwiseSeparableConv(cin, cout, stride, k))


def sequential_case(rng):
    c, hidden, classes = randint(rng, 1, 3), randint(rng, 2, 5), randint(rng, 2, 6)

    def layers(lib):
        return lib.Sequential(
            lib.Conv2d(c, hidden, 3, padding=1, bias=False), lib.BatchNorm2d(hidden), lib.ReLU(),
            lib.MaxPool2d(2), lib.Conv2d(hidden, hidden, 3, padding=1, bias=False), lib.LeakyReLU(0.1),
            lib.AvgPool2d(2, ceil_mode=True), lib.Flatten(), lib.Linear(hidden * 4, 8, bias=False),
            lib.BatchNorm1d(8), lib.Tanh(), lib.Dropout(0.0), lib.Linear(8, classes), lib.Sigmoid(),
        )

    x = image_batch(rng, c, low=7, high=8, batch=(3, 4))  # pooled twice to 2x2; BatchNorm1d sees N >= 3
    what = f"Sequential(conv-bn-relu-pool-conv-pool-linear-bn1d-linear-sigmoid), {c}->{hidden}->{classes}"
    return Case(what, layers(nn), x, lambda: layers(torch_nn()))


BLOCK_CASES = {
    "BasicConv2d": basic_conv2d_case,
    "BasicBlock": basic_block_case,
    "Bottleneck": bottleneck_case,
    "Concat": concat_case,
    "Inception": inception_case,
    "DenseLayer": dense_layer_case,
    "DenseBlock": dense_block_case,
    "Transition": transition_case,
    "SqueezeExcite": squeeze_excite_case,
    "NiNBlock": nin_block_case,
    "DepthwiseSeparableConv": depthwise_separable_case,
    "Sequential": sequential_case,
}


# -- running and comparing -------------------------------------------------------------------
def assert_agrees(actual, expected, what, tol=AGREEMENT_TOL):
    """Norm-relative agreement of two arrays (NumPy, CuPy or torch), with `what` in the failure message."""
    if hasattr(expected, "detach"):  # a torch tensor
        expected = expected.detach().cpu().numpy()
    err = relative_error(actual, expected)
    if not err < tol:
        raise AssertionError(f"{what}: relative error {err:.2e} exceeds {tol:.0e}")


def upstream_gradient(shape, rng, like):
    """A random dy of `shape` on the device of `like`; 4-D ones are sometimes channels-last in memory."""
    xp = backend.get_array_module(like)
    dy = xp.asarray(rng.standard_normal(shape).astype(np.float32))
    if len(shape) == 4 and rng.random() < 0.5:
        dy = xp.ascontiguousarray(dy.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    return dy


def run_convlab(model, x, rng):
    """Forward, then backward a random dy: (y, dy, dx, {name: grad}, state_dict after)."""
    for p in model.parameters():
        p.grad = None
    y = model(x)
    dy = upstream_gradient(y.shape, rng, y)
    dx = model.backward(dy)
    grads = {name: p.grad for name, p in model.named_parameters()}
    return y, dy, dx, grads, model.state_dict()


def assert_same_state(state, tstate, what, tol=AGREEMENT_TOL):
    """Compare a convlab state_dict with a PyTorch one: same keys, same values (buffers included)."""
    if list(state) != list(tstate):
        raise AssertionError(f"{what}: state_dict keys {list(state)} differ from PyTorch's {list(tstate)}")
    for name, tvalue in tstate.items():
        if name.endswith("num_batches_tracked"):
            if int(state[name]) != int(tvalue):
                raise AssertionError(f"{what}: {name} is {int(state[name])}, PyTorch has {int(tvalue)}")
        else:
            assert_agrees(state[name], tvalue, f"{what}: {name} after forward", tol)
