"""The block split: default rule, skip connections, explicit splits, look-ups and errors."""

from __future__ import annotations

import pytest
import torch
from conftest import BasicBlock
from torch import nn

import hessiankit as hk
from hessiankit.errors import BlockError


def test_default_rule_groups_followers_with_weighted_module(conv_bn):
    net, _, _ = conv_bn
    split = hk.split_blocks(net)
    assert [b.module_names for b in split] == [("0", "1", "2", "3"), ("4",)]
    assert [b.has_bn for b in split] == [True, False]
    assert [b.num_params for b in split] == [2 * 3 * 9 + 3 + 3 + 3, 48 * 3 + 3]
    assert split.blocks[0].param_names == ("0.weight", "0.bias", "1.weight", "1.bias")
    assert split.blocks[0].buffer_names == (
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
    )


def test_leading_parameter_free_modules_join_the_first_block():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    split = hk.split_blocks(net)
    assert [b.module_names for b in split] == [("0", "1", "2"), ("3",)]
    assert split.blocks[0].name == "1"


def test_residual_unit_is_one_block(resnet_bn):
    net, _, _ = resnet_bn
    split = hk.split_blocks(net)
    # Pooling and flatten follow the residual unit into its block.
    assert [b.module_names for b in split] == [("0", "1", "2"), ("3", "4", "5"), ("6",)]
    assert [b.has_skip for b in split] == [False, True, False]
    assert split.block("3.conv1").index == 2


def test_skip_written_in_models_own_forward_is_detected():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = nn.Linear(3, 4)
            self.branch = nn.Linear(4, 4)
            self.out = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.tanh(self.inp(x))
            h = h + torch.relu(self.branch(h))
            return self.out(h)

    split = hk.split_blocks(Net())
    assert len(split) == 3
    assert [b.has_skip for b in split] == [False, True, False]
    assert split.blocks[1].param_names == ("branch.weight", "branch.bias")
    # The block's function computes exactly that residual unit.
    net = Net().double()
    split = hk.split_blocks(net)
    z = torch.randn(5, 4, dtype=torch.float64)
    want = z + torch.relu(net.branch(z))
    assert torch.equal(split.blocks[1].function(z), want)


def test_block_functions_compose_to_the_model(resnet_bn):
    net, x, _ = resnet_bn
    net.eval()
    z = x
    for b in hk.split_blocks(net):
        z = b.function(z)
    assert torch.allclose(z, net(x), rtol=0, atol=1e-13)


def test_explicit_split_by_module_names():
    net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 2))
    split = hk.split_blocks(net, blocks=[["0", "2"], "4"])
    assert [b.module_names for b in split] == [("0", "1", "2", "3"), ("4",)]
    assert split.blocks[0].num_params == 25 + 30


def test_explicit_split_into_a_residual_unit_by_submodule_names():
    net = nn.Sequential(nn.Conv2d(2, 3, 1), BasicBlock(3))
    # The skip connection spans conv1..bn2: a cut inside it is refused.
    with pytest.raises(BlockError, match="inside a skip connection"):
        hk.split_blocks(net, blocks=["0", ["1.conv1", "1.bn1"], ["1.conv2", "1.bn2"]])
    # Naming submodules traces through the unit; one block holding all of it is fine.
    split = hk.split_blocks(net, blocks=["0", ["1.conv1", "1.bn2"]])
    assert len(split) == 2 and split.blocks[1].has_skip


@pytest.mark.parametrize(
    "blocks,message",
    [
        (["2", "0"], "overlaps or precedes"),
        (["nope"], "no module 'nope'"),
        (["0"], "has weights but is in no block"),
    ],
)
def test_explicit_split_errors(blocks, message):
    net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2))
    with pytest.raises(BlockError, match=message):
        hk.split_blocks(net, blocks=blocks)


def test_lookup_by_index_path_and_model(mlp_tanh):
    net, _, _ = mlp_tanh
    split = hk.split_blocks(net)
    assert split.block(2).index == 2
    assert split.block("2").index == 2  # a digit string is an index
    assert split.block(" 3").index == 3
    assert split.block("model").index == 0
    for zero in (0, "0"):  # not silently the whole model
        with pytest.raises(BlockError, match="use 'model'"):
            split.block(zero)
    assert split.whole_model().num_params == sum(p.numel() for p in net.parameters())
    with pytest.raises(BlockError, match=r"out of range; this model has blocks 1\.\.3"):
        split.block(4)
    with pytest.raises(BlockError, match="no block contains module"):
        split.block("fc9")


def test_untraceable_model_gives_a_clear_error():
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:  # data-dependent control flow cannot be traced
                return self.lin(x)
            return x

    with pytest.raises(BlockError, match="cannot trace Branchy"):
        hk.split_blocks(Branchy())
