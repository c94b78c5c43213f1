"""`summary`: per-layer output shapes, parameters, MACs and receptive fields, the totals, the
printed table and JSON, and the `convlab summary` command.

Reference figures: ResNet-18 at 224×224 does 1.82 G multiply-accumulates (torchvision's model
card lists 1.81 "GFLOPS", counting MACs); the inception block 192 → (64 | 96→128 | 16→32 |
pool→32) on 28×28 has ≈ 0.16 M parameters and ≈ 128 M MACs, against ≈ 0.44 M / 346 M for one
3×3 convolution from 192 to 256 channels and 1.22 M / 963 M for a 5×5 one (d2l, §8.4; Szegedy et
al. 2015).
"""

import json
from collections import OrderedDict

import numpy as np
import pytest

from convlab import backend, models, nn
from convlab.inspect import ModelSummary, summary, summary_cli


def rows_by_name(result):
    return {r.name: r for r in result.rows}


# -- parameters and shapes ----------------------------------------------------------------------
def test_rows_follow_the_forward_pass_with_shapes_and_parameters():
    result = summary(models.get("lenet5"), (1, 28, 28))
    assert [r.name for r in result.rows] == ["conv1", "act1", "pool1", "conv2", "act2", "pool2", "flatten",
                                             "fc1", "act3", "fc2", "act4", "fc3"]
    rows = rows_by_name(result)
    assert rows["conv1"].type == "Conv2d"
    assert rows["conv1"].output_shape == (6, 28, 28)
    assert rows["pool2"].output_shape == (16, 5, 5)
    assert rows["flatten"].output_shape == (400,)
    assert [rows[n].params for n in ("conv1", "conv2", "fc1", "fc2", "fc3")] == [156, 2416, 48120, 10164, 850]
    assert result.total_params == result.trainable_params == 61_706
    assert result.output_shape == (10,)


def test_totals_count_parameters_and_keep_batch_norm_statistics_apart():
    model = models.get("resnet20")
    result = summary(model, (3, 32, 32))
    assert result.total_params == model.num_parameters() == 269_722
    bn_channels = sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert result.buffer_elements == 2 * bn_channels  # running mean and variance
    assert result.non_trainable_params == 0


def test_frozen_parameters_are_reported_as_non_trainable():
    model = models.get("lenet5")
    model.conv1.weight.requires_grad = False
    result = summary(model, (1, 28, 28))
    assert result.non_trainable_params == 150
    assert result.trainable_params == 61_706 - 150
    assert rows_by_name(result)["conv1"].trainable_params == 6


# -- multiply-accumulates -------------------------------------------------------------------------
def test_macs_of_convolutions_and_dense_layers():
    rows = rows_by_name(summary(models.get("lenet5"), (1, 28, 28)))
    assert rows["conv1"].macs == 6 * 28 * 28 * (1 * 5 * 5)
    assert rows["conv2"].macs == 16 * 10 * 10 * (6 * 5 * 5)
    assert rows["fc1"].macs == 400 * 120
    assert rows["pool1"].macs == rows["act1"].macs == 0  # only conv and dense layers count


def test_grouped_convolution_macs_divide_by_the_groups():
    model = nn.Sequential(nn.Conv2d(32, 64, 3, padding=1, groups=4),
                          nn.Conv2d(64, 64, 3, padding=1, groups=64))  # grouped, then depthwise
    result = summary(model, (32, 8, 8))
    assert [r.macs for r in result.rows] == [64 * 8 * 8 * (8 * 9), 64 * 8 * 8 * 9]
    assert result.total_flops == 2 * result.total_macs


@pytest.fixture(scope="module")
def resnet18_at_224():
    saved = dict(backend._state)  # module fixtures start before conftest's per-test reset
    backend.use("cpu")
    backend.set_default_dtype(np.float32)
    backend.manual_seed(0)
    result = summary(models.get("resnet18"), (3, 224, 224))
    backend._state.update(saved)
    return result


def test_resnet18_does_1_82_giga_macs_at_224(resnet18_at_224):
    assert resnet18_at_224.total_macs == pytest.approx(1.82e9, rel=0.01)
    assert resnet18_at_224.total_params == 11_689_512


def test_resnet18_sees_435_pixels(resnet18_at_224):
    # conv1 7/2 → 7 (jump 2); max-pool 3/2 → 11 (4); layer1, four 3×3 → 43; layer2 → 51 (8) then 99;
    # layer3 → 115 (16) then 211; layer4 → 243 (32) then 435.
    assert resnet18_at_224.receptive_field == (435, 435)
    rows = rows_by_name(resnet18_at_224)
    assert rows["layer4.1.conv2"].receptive_field == (435, 435)
    assert rows["layer4.1.conv2"].jump == (32, 32)
    assert rows["avgpool"].receptive_field is None  # no spatial output


def inception_192():
    return nn.Inception(192, 64, 96, 128, 16, 32, 32, branch3_kernel_size=5)


def test_an_inception_block_is_much_cheaper_than_one_wide_convolution():
    inception = summary(inception_192(), (192, 28, 28))
    conv3 = summary(nn.Conv2d(192, 256, 3, padding=1), (192, 28, 28))
    conv5 = summary(nn.Conv2d(192, 256, 5, padding=2), (192, 28, 28))
    assert inception.output_shape == conv3.output_shape == conv5.output_shape == (256, 28, 28)
    assert inception.total_params == pytest.approx(0.16e6, rel=0.03)
    assert inception.total_macs == pytest.approx(128e6, rel=0.01)
    assert conv3.total_params == pytest.approx(0.44e6, rel=0.01)
    assert conv3.total_macs == pytest.approx(346e6, rel=0.01)
    assert conv5.total_params == pytest.approx(1.22e6, rel=0.01)
    assert conv5.total_macs == pytest.approx(963e6, rel=0.01)


# -- receptive fields -----------------------------------------------------------------------------
def field(*layers, input_shape=(1, 32, 32)):
    result = summary(nn.Sequential(*layers), input_shape)
    return result.rows[-1].receptive_field[0], result.rows[-1].jump[0]


def conv3(stride=1, dilation=1):
    return nn.Conv2d(1, 1, 3, stride=stride, padding=dilation, dilation=dilation)


def test_stacked_3x3_convolutions_see_5x5_then_7x7():
    assert field(conv3()) == (3, 1)
    assert field(conv3(), conv3()) == (5, 1)
    assert field(conv3(), conv3(), conv3()) == (7, 1)


def test_a_stride_multiplies_the_jump_and_widens_later_layers():
    assert field(conv3(stride=2)) == (3, 2)
    assert field(conv3(stride=2), conv3()) == (7, 2)
    assert field(nn.MaxPool2d(2), conv3()) == (2 + 2 * 2, 2)


def test_a_dilated_3x3_convolution_sees_5x5():
    assert field(conv3(dilation=2)) == (5, 1)
    assert field(conv3(dilation=2), conv3(dilation=2)) == (9, 1)


def test_pointwise_layers_keep_the_field():
    assert field(conv3(), nn.ReLU(), nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1)) == (3, 1)


def test_rectangular_kernels_give_rectangular_fields():
    result = summary(nn.Conv2d(1, 1, (3, 5), stride=(1, 2)), (1, 16, 16))
    assert result.rows[0].receptive_field == (3, 5)
    assert result.rows[0].jump == (1, 2)


def test_branches_that_meet_take_the_largest_field():
    # inception: 1×1 | 1×1→3×3 | 1×1→5×5 | 3×3 pool→1×1; the layer after the concatenation sees 5 + 2
    model = nn.Sequential(OrderedDict(block=nn.Inception(4, 2, 2, 2, 2, 2, 2, branch3_kernel_size=5),
                                      after=nn.Conv2d(8, 1, 3, padding=1)))
    rows = rows_by_name(summary(model, (4, 16, 16)))
    assert rows["block.branch1.conv"].receptive_field == (1, 1)
    assert rows["block.branch2.1.conv"].receptive_field == (3, 3)
    assert rows["block.branch3.1.conv"].receptive_field == (5, 5)
    assert rows["block.branch4.0"].receptive_field == (3, 3)  # the pool sees its own input, not branch3
    assert rows["after"].receptive_field == (7, 7)


def test_each_branch_starts_from_the_field_of_the_blocks_input_not_its_siblings():
    model = nn.Sequential(OrderedDict(first=nn.Inception(4, 2, 2, 2, 2, 2, 2, branch3_kernel_size=5),
                                      second=nn.Inception(8, 2, 2, 2, 2, 2, 2, branch3_kernel_size=5)))
    rows = rows_by_name(summary(model, (4, 16, 16)))
    assert rows["second.branch1.conv"].receptive_field == (5, 5)  # the first block's concatenation
    assert rows["second.branch3.1.conv"].receptive_field == (9, 9)
    assert rows["second.branch4.0"].receptive_field == (7, 7)  # 5 + 2, whatever branch3 saw


def test_a_residual_sum_takes_the_larger_of_body_and_shortcut():
    model = nn.Sequential(OrderedDict(stem=conv3(), block=nn.BasicBlock(1, 4, stride=2, shortcut="A")))
    rows = rows_by_name(summary(model, (1, 16, 16)))
    assert rows["block.downsample"].receptive_field == (3, 3)  # subsampling: 1×1 window
    assert rows["block.downsample"].jump == (2, 2)
    assert rows["block.conv2"].receptive_field == (3 + 2 + 2 * 2, 3 + 2 + 2 * 2)
    assert rows["block.relu_out"].receptive_field == rows["block.conv2"].receptive_field


def test_dense_blocks_pass_the_largest_field_through_their_concatenations():
    model = nn.Sequential(OrderedDict(block=nn.DenseBlock(3, 4, growth_rate=2), after=nn.Conv2d(10, 1, 1)))
    rows = rows_by_name(summary(model, (4, 16, 16)))
    assert [rows[f"block.denselayer{i}.conv2"].receptive_field[0] for i in (1, 2, 3)] == [3, 5, 7]
    assert rows["after"].receptive_field == (7, 7)


# -- memory, modes, errors ----------------------------------------------------------------------
def test_activation_memory_sums_every_layer_output_for_one_image():
    result = summary(models.get("lenet5"), (1, 28, 28))
    elements = sum(int(np.prod(r.output_shape)) for r in result.rows)
    assert result.activation_bytes == 4 * elements  # float32


def test_summary_runs_in_eval_mode_and_restores_the_modes():
    model = models.get("resnet20")
    bn = model.bn1
    before = bn.running_mean.copy(), int(bn.num_batches_tracked)
    summary(model, (3, 32, 32))
    assert model.training and bn.training
    assert np.array_equal(bn.running_mean, before[0]) and int(bn.num_batches_tracked) == before[1]
    model.eval()
    summary(model, (3, 32, 32))
    assert not model.training


def test_an_input_that_does_not_fit_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match=r"\(1, 20, 20\) input does not fit"):
        summary(models.get("lenet5"), (1, 20, 20))
    with pytest.raises(ValueError, match=r"input_shape must be \(C, H, W\)"):
        summary(models.get("lenet5"), (28, 28))


# -- printing and JSON -------------------------------------------------------------------------
def test_the_table_lists_every_layer_and_the_totals():
    text = str(summary(models.get("lenet5"), (1, 28, 28)))
    for word in ("Layer", "Type", "Output shape", "Params", "MACs", "RF", "Jump", "conv1", "MaxPool2d",
                 "Total params: 61,706", "Trainable params: 61,706", "Non-trainable params: 0"):
        assert word in text
    conv2_line = next(line for line in text.splitlines() if line.startswith("conv2 "))
    assert "(16, 10, 10)" in conv2_line and "2,416" in conv2_line and "240.00 K" in conv2_line
    assert conv2_line.split()[-2:] == ["14", "2"]  # receptive field and jump


def test_to_dict_is_json_with_rows_and_totals():
    result = summary(models.get("resnet20"), (3, 32, 32))
    data = json.loads(json.dumps(result.to_dict()))
    assert data["total_params"] == 269_722
    assert data["total_flops"] == 2 * data["total_macs"] == 2 * result.total_macs
    assert len(data["rows"]) == len(result.rows)
    assert data["rows"][0] == {"name": "conv1", "type": "Conv2d", "input_shape": [3, 32, 32],
                               "output_shape": [16, 32, 32], "params": 432, "trainable_params": 432,
                               "macs": 16 * 32 * 32 * 27, "receptive_field": [3, 3], "jump": [1, 1],
                               "output_bytes": 4 * 16 * 32 * 32}
    assert isinstance(result, ModelSummary)


# -- the command --------------------------------------------------------------------------------
def test_cli_prints_the_table_at_the_models_default_input(capsys):
    assert summary_cli(["resnet20"]) == 0
    out = capsys.readouterr().out
    assert "layer3.2.conv2" in out and "Total params: 269,722" in out and "(3, 32, 32)" in out


def test_cli_json_with_input_and_classes(capsys):
    assert summary_cli(["resnet20", "--input", "1,64,64", "--num-classes", "4", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "resnet20"
    assert data["input_shape"] == [1, 64, 64]
    assert data["rows"][0]["params"] == 16 * 1 * 3 * 3  # in_channels follows the input
    assert data["output_shape"] == [4]


def test_cli_reports_an_unknown_model_in_one_line_and_exits_2(capsys):
    assert summary_cli(["resnet21"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown model 'resnet21'" in err and "resnet20" in err


def test_cli_reports_an_input_that_does_not_fit(capsys):
    assert summary_cli(["lenet5", "--input", "1,20,20"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convlab summary: a (1, 20, 20) input does not fit") and err.count("\n") == 1


def test_cli_rejects_a_malformed_input_shape(capsys):
    with pytest.raises(SystemExit) as info:
        summary_cli(["lenet5", "--input", "28x28"])
    assert info.value.code == 2
    assert "C,H,W" in capsys.readouterr().err
