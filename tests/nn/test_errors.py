"""Bad input fails early with a ValueError that names the layer, what it expected and what came."""

import numpy as np
import pytest

from convlab import nn


def ones(*shape):
    return np.ones(shape, dtype=np.float32)


# -- wrong rank ------------------------------------------------------------------------------
@pytest.mark.parametrize("layer, x, message", [
    (nn.Conv2d(3, 8, 3), ones(3, 8, 8),
     r"Conv2d\(3, 8, kernel_size=\(3, 3\), stride=\(1, 1\)\): expected a 4-D input \(N, C, H, W\), "
     r"got shape \(3, 8, 8\)"),
    (nn.Linear(4, 2), ones(2, 4, 1, 1),
     r"Linear\(in_features=4, out_features=2, bias=True\): expected a 2-D input \(N, features\), "
     r"got shape \(2, 4, 1, 1\)"),
    (nn.BatchNorm2d(4), ones(2, 4),
     r"BatchNorm2d\(4\): expected a 4-D input \(N, C, H, W\), got shape \(2, 4\)"),
    (nn.BatchNorm1d(4), ones(2, 4, 3, 3),
     r"BatchNorm1d\(4\): expected a 2-D input \(N, C\), got shape \(2, 4, 3, 3\)"),
    (nn.MaxPool2d(2), ones(4, 4),
     r"MaxPool2d\(.*\): expected a 4-D input \(N, C, H, W\), got shape \(4, 4\)"),
    (nn.AvgPool2d(2), ones(1, 4, 4),
     r"AvgPool2d\(.*\): expected a 4-D input \(N, C, H, W\), got shape \(1, 4, 4\)"),
    (nn.GlobalAvgPool2d(), ones(2, 3),
     r"GlobalAvgPool2d: expected a 4-D input \(N, C, H, W\), got shape \(2, 3\)"),
    (nn.AdaptiveAvgPool2d(1), ones(2, 3),
     r"AdaptiveAvgPool2d\(.*\): expected a 4-D input .*got shape \(2, 3\)"),
])
def test_wrong_rank_is_rejected_naming_layer_expected_and_actual_shape(layer, x, message):
    with pytest.raises(ValueError, match=message):
        layer(x)


def test_cross_entropy_needs_2d_logits():
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: expected a 2-D input of logits \(N, classes\), "
                                         r"got shape \(5,\)"):
        nn.CrossEntropyLoss()(ones(5), np.zeros(5, dtype=np.int64))


# -- wrong channel count ---------------------------------------------------------------------
@pytest.mark.parametrize("layer, x, message", [
    (nn.Conv2d(3, 8, 3), ones(1, 4, 8, 8),
     r"Conv2d\(3, 8, .*\): expected 3 input channels \(axis 1\), got 4"),
    (nn.Linear(10, 2), ones(2, 12),
     r"Linear\(in_features=10, .*\): expected 10 input channels \(axis 1\), got 12"),
    (nn.BatchNorm2d(4), ones(2, 3, 2, 2),
     r"BatchNorm2d\(4\): expected 4 input channels \(axis 1\), got 3"),
    (nn.BatchNorm1d(4), ones(2, 5),
     r"BatchNorm1d\(4\): expected 4 input channels \(axis 1\), got 5"),
    (nn.BasicBlock(4, 4), ones(1, 2, 4, 4),
     r"Conv2d\(4, 4, .*\): expected 4 input channels \(axis 1\), got 2"),
])
def test_wrong_channel_count_is_rejected(layer, x, message):
    with pytest.raises(ValueError, match=message):
        layer(x)


# -- a kernel larger than the (padded) input -------------------------------------------------
@pytest.mark.parametrize("layer, x, message", [
    (nn.Conv2d(1, 1, 5), ones(1, 1, 3, 3),
     r"Conv2d\(1, 1, kernel_size=\(5, 5\).*\): the kernel \(dilated extent \(5, 5\)\) is larger than the "
     r"padded input \(3, 3\)"),
    (nn.Conv2d(1, 1, 3, dilation=3, padding=0), ones(1, 1, 6, 9),
     r"Conv2d\(.*dilation=\(3, 3\)\): the kernel \(dilated extent \(7, 7\)\) is larger than the padded input "
     r"\(6, 9\)"),
    (nn.Conv2d(1, 1, (2, 5), padding=1), ones(1, 1, 4, 2),
     r"Conv2d\(.*\): the kernel \(dilated extent \(2, 5\)\)"),
    (nn.MaxPool2d(4), ones(1, 1, 3, 3),
     r"max_pool2d: kernel \(4, 4\) with padding \(0, 0\) is larger than the input \(3, 3\)"),
    (nn.AvgPool2d((2, 5), padding=(0, 1)), ones(1, 1, 4, 2),
     r"avg_pool2d: kernel \(2, 5\) with padding \(0, 1\) is larger than the input \(4, 2\)"),
])
def test_kernel_larger_than_the_padded_input_is_rejected(layer, x, message):
    with pytest.raises(ValueError, match=message):
        layer(x)


def test_pool_padding_over_half_the_kernel_is_rejected():
    with pytest.raises(ValueError, match=r"max_pool2d: padding \(2, 2\) must be at most half the kernel size "
                                         r"\(3, 3\)"):
        nn.MaxPool2d(3, padding=2)(ones(1, 1, 8, 8))


@pytest.mark.parametrize("in_hw, out_hw", [((5, 4), (2, 2)), ((7, 9), (3, 4)), ((3, 3), (5, 5)), ((8, 8), (2, 4))])
def test_adaptive_pool_uses_pytorchs_bins_for_any_sizes(in_hw, out_hw):
    torch = pytest.importorskip("torch")
    rs = np.random.default_rng(0)
    x = rs.standard_normal((2, 3) + in_hw)
    layer = nn.AdaptiveAvgPool2d(out_hw)
    y = layer(x)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.adaptive_avg_pool2d(xt, out_hw)
    dy = rs.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.backward(dy), xt.grad.numpy(), rtol=1e-12, atol=1e-12)


# -- backward before forward -----------------------------------------------------------------
@pytest.mark.parametrize("layer, name", [
    (nn.Conv2d(2, 3, 3), r"Conv2d\(2, 3, kernel_size=\(3, 3\), stride=\(1, 1\)\)"),
    (nn.Linear(2, 3), r"Linear\(in_features=2, out_features=3, bias=True\)"),
    (nn.BatchNorm2d(2), r"BatchNorm2d\(2\)"),
    (nn.MaxPool2d(2), r"MaxPool2d\(kernel_size=\(2, 2\), .*\)"),
    (nn.AvgPool2d(2), r"AvgPool2d\(kernel_size=\(2, 2\), .*\)"),
    (nn.GlobalAvgPool2d(), r"GlobalAvgPool2d"),
    (nn.ReLU(), r"ReLU"),
    (nn.Dropout(0.5), r"Dropout"),
    (nn.Flatten(), r"Flatten"),
    (nn.SqueezeExcite(4, 2), r"SqueezeExcite"),
    (nn.Inception(2, 1, 1, 1, 1, 1, 1), r"Inception"),
    (nn.DenseLayer(2, 1), r"DenseLayer"),
    (nn.BasicBlock(2, 2), r"ReLU"),
])
def test_backward_before_forward_is_rejected(layer, name):
    with pytest.raises(ValueError, match=name + r": backward\(\) was called before forward\(\)"):
        layer.backward(ones(1, 2, 2, 2))


def test_cross_entropy_backward_before_forward_is_rejected():
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: backward\(\) was called before forward\(\)"):
        nn.CrossEntropyLoss().backward()


def test_backward_after_clear_cache_is_rejected():
    conv = nn.Conv2d(1, 1, 3)
    conv(ones(1, 1, 4, 4))
    conv.clear_cache()
    with pytest.raises(ValueError, match=r"Conv2d\(.*\): backward\(\) was called before forward\(\)"):
        conv.backward(ones(1, 1, 2, 2))


# -- state_dict mismatches -------------------------------------------------------------------
def test_load_state_dict_with_missing_and_unexpected_keys_names_them():
    state = nn.Conv2d(3, 4, 3).state_dict()
    del state["bias"]
    state["weights"] = state.pop("weight")
    with pytest.raises(ValueError, match=r"Conv2d.load_state_dict: keys do not match; "
                                         r"missing \['weight', 'bias'\], unexpected \['weights'\]"):
        nn.Conv2d(3, 4, 3).load_state_dict(state)


def test_load_state_dict_with_a_wrong_shape_names_the_key_and_both_shapes():
    state = nn.Conv2d(3, 4, 5).state_dict()
    with pytest.raises(ValueError, match=r"Conv2d.load_state_dict: 'weight' expected shape \(4, 3, 3, 3\), "
                                         r"got \(4, 3, 5, 5\)"):
        nn.Conv2d(3, 4, 3).load_state_dict(state)


def test_load_state_dict_with_a_wrong_buffer_shape_is_rejected():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    state = model.state_dict()
    state["1.running_var"] = np.ones(3, dtype=np.float32)
    with pytest.raises(ValueError, match=r"Sequential.load_state_dict: '1.running_var' expected shape "
                                         r"\(2,\), got \(3,\)"):
        model.load_state_dict(state)


def test_load_state_dict_non_strict_ignores_missing_and_unexpected_keys():
    model = nn.Linear(2, 2)
    new_weight = np.arange(4.0, dtype=np.float32).reshape(2, 2)
    model.load_state_dict({"weight": new_weight, "extra": np.zeros(1)}, strict=False)
    np.testing.assert_array_equal(model.weight.data, new_weight)


# -- constructor arguments -------------------------------------------------------------------
@pytest.mark.parametrize("cin, cout, groups", [(4, 6, 4), (3, 6, 2), (6, 4, 3)])
def test_groups_must_divide_both_channel_counts(cin, cout, groups):
    with pytest.raises(ValueError, match=rf"Conv2d: in_channels \({cin}\) and out_channels \({cout}\) "
                                         rf"must both be divisible by groups \({groups}\)"):
        nn.Conv2d(cin, cout, 3, groups=groups)


def test_unknown_padding_string_is_rejected():
    with pytest.raises(ValueError, match=r"padding must be an int, a pair, 'same' or 'valid', got 'full'"):
        nn.Conv2d(1, 1, 3, padding="full")


def test_kernel_size_of_three_numbers_is_rejected():
    with pytest.raises(ValueError, match=r"kernel_size must be an int or a pair of ints, got \(3, 3, 3\)"):
        nn.Conv2d(1, 1, (3, 3, 3))


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_dropout_probability_outside_zero_one_is_rejected(p):
    with pytest.raises(ValueError, match=rf"Dropout: p must be in \[0, 1\], got {p}"):
        nn.Dropout(p)


def test_label_smoothing_outside_zero_one_is_rejected():
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: label_smoothing must be in \[0, 1\), got 1.0"):
        nn.CrossEntropyLoss(label_smoothing=1.0)


def test_residual_shortcut_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"shortcut must be 'A' \(zero padding\), 'B' \(projection\) or "
                                         r"'none', got 'C'"):
        nn.BasicBlock(2, 4, stride=2, shortcut="C")
    with pytest.raises(ValueError, match=r"shortcut 'A' cannot reduce channels \(8 -> 4\)"):
        nn.BasicBlock(8, 4, shortcut="A")
    with pytest.raises(ValueError, match=r"BasicBlock: the shape changes \(2→4 channels, stride 2\) so the "
                                         r"shortcut must be 'A' or 'B', not 'none'"):
        nn.BasicBlock(2, 4, stride=2, shortcut="none")


def test_module_subclass_must_call_super_init():
    class Broken(nn.Module):
        def __init__(self):
            self.layer = nn.ReLU()

    with pytest.raises(RuntimeError, match=r"Broken.__init__ must call super\(\).__init__\(\) first"):
        Broken()


# -- labels ----------------------------------------------------------------------------------
@pytest.mark.parametrize("labels, message", [
    ([0, 5, 1], r"CrossEntropyLoss: labels must lie in \[0, 4\] for 5 classes, got values from 0 to 5"),
    ([-1, 2, 3], r"CrossEntropyLoss: labels must lie in \[0, 4\] for 5 classes, got values from -1 to 3"),
])
def test_labels_out_of_range_are_rejected(labels, message):
    with pytest.raises(ValueError, match=message):
        nn.CrossEntropyLoss()(ones(3, 5), np.array(labels))


def test_labels_of_the_wrong_shape_or_type_are_rejected():
    criterion = nn.CrossEntropyLoss()
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: expected labels of shape \(3,\), got \(3, 1\)"):
        criterion(ones(3, 5), np.zeros((3, 1), dtype=np.int64))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: labels must be integers, got dtype float32"):
        criterion(ones(3, 5), np.zeros(3, dtype=np.float32))


def test_batch_norm_training_on_a_single_value_per_channel_is_rejected():
    with pytest.raises(ValueError, match=r"batch_norm: training needs more than one value per channel, "
                                         r"got input shape \(1, 4\)"):
        nn.BatchNorm1d(4)(ones(1, 4))

