"""Load a shipped ONNX classifier's weights back into :class:`training.model.LesionNet`.

Only the ONNX file of a released model is kept (checkpoints are not committed), and the
exporter folds each BatchNorm into the convolution before it. The folded weights go back
into the convolution and the BatchNorm becomes an exact identity plus the folded bias
(mean 0, variance ``1 - eps``, scale 1), so the network computes what the ONNX graph does.
Its statistics mean nothing after that, so fine-tuning keeps every BatchNorm in eval mode
(``TrainConfig.freeze_bn``) and learns only their scale and shift.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from training.model import BN_EPS, LesionNet, MBConv


def _constant_values(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Every initializer and Constant as float32, under the name the Conv nodes read."""
    values = {i.name: numpy_helper.to_array(i).astype(np.float32) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Cast" and node.input[0] in values:  # fp16-stored weights
            values[node.output[0]] = values[node.input[0]]
        elif node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t).astype(np.float32)
        elif node.op_type == "DequantizeLinear" and node.input[0] in values:  # int8 weights
            q, scale = values[node.input[0]], values[node.input[1]]
            shape = (-1,) + (1,) * (q.ndim - 1)
            values[node.output[0]] = q * scale.reshape(shape)
    return values


def conv_bn_pairs(net: LesionNet) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """The network's convolutions with their BatchNorm, in graph order."""
    pairs: list[tuple[nn.Conv2d, nn.BatchNorm2d]] = [(net._conv_stem, net._bn0)]
    for block in net._blocks:
        assert isinstance(block, MBConv)
        if block.has_expand:
            pairs.append((block._expand_conv, block._bn0))
        pairs += [(block._depthwise_conv, block._bn1), (block._project_conv, block._bn2)]
    pairs.append((net._conv_head, net._bn1))
    return pairs


def load_onnx_weights(net: LesionNet, path: Path) -> list[str]:
    """Copy the ONNX model's weights into ``net``; returns the classes it had no row for.

    The ONNX head may have fewer classes than ``net`` (a class appended since): the rows
    it has are copied in order; the caller initialises the others (:func:`init_class_from`).
    Raises on any shape mismatch.
    """
    graph = onnx.load(str(path)).graph
    values = _constant_values(graph)
    convs = [n for n in graph.node if n.op_type == "Conv"]
    pairs = conv_bn_pairs(net)
    if len(convs) != len(pairs):
        raise RuntimeError(f"{len(convs)} convolutions in the ONNX graph, {len(pairs)} in ours")
    with torch.no_grad():
        for (conv, bn), node in zip(pairs, convs, strict=True):
            weight, bias = values[node.input[1]], values[node.input[2]]
            if tuple(conv.weight.shape) != weight.shape:
                raise RuntimeError(f"{node.name}: {weight.shape} vs {tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.from_numpy(weight))
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(bias))
            assert bn.running_mean is not None and bn.running_var is not None
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - BN_EPS)
        gemm = next(n for n in graph.node if n.op_type == "Gemm")
        fc_w, fc_b = values[gemm.input[1]], values[gemm.input[2]]
        if gemm.attribute and any(a.name == "transB" and a.i == 0 for a in gemm.attribute):
            fc_w = fc_w.T
        n_old = fc_w.shape[0]
        net._fc.weight[:n_old].copy_(torch.from_numpy(fc_w))
        net._fc.bias[:n_old].copy_(torch.from_numpy(fc_b))
    return [str(i) for i in range(n_old, net._fc.out_features)]


def init_class_from(net: LesionNet, new: int, source: int) -> None:
    """Start a new class's head row as a copy of an existing one (``scc`` from ``akiec``,
    which held SCC before it had a class of its own), its bias a little lower so the
    copy does not take half of the old class's probability on the first step."""
    with torch.no_grad():
        net._fc.weight[new].copy_(net._fc.weight[source])
        net._fc.bias[new].copy_(net._fc.bias[source] - 1.0)
