"""GoogLeNet / Inception v1 (Szegedy et al., 2015) with torchvision's layout and names.

conv1, maxpool1, conv2, conv3, maxpool2, inception3a … inception5b (with maxpools between the
stages), avgpool, dropout, fc; 6,624,904 parameters at 1000 classes without the auxiliary
classifiers. Like torchvision, branch3 uses a 3×3 convolution (the paper's 5×5:
`branch3_kernel_size=5`) and every convolution is BasicConv2d (conv, BN eps 1e-3, ReLU).

Auxiliary classifiers (`aux_logits=True`, names aux1, aux2 as in torchvision) sit on the
outputs of inception4a and inception4d. They run only in training mode: `forward` still
returns the main logits and leaves the two auxiliary logits in `model.aux_outputs`;
`backward(dy, aux_grads=(d_aux1, d_aux2))` adds their gradients. A trainer that passes only
`dy` trains the main head, and the auxiliary heads then receive no gradient. They pool with
the paper's 5×5 / stride 3 average (torchvision pools adaptively to 4×4, the same windows
up to placement), so with aux_logits the input must be 223–270 pixels (inception4a maps of
14–16).
"""

from __future__ import annotations

from collections import OrderedDict

from .. import nn
from .initialization import init_convolutions, init_linears

# (in, 1×1, 3×3 reduce, 3×3, "5×5" reduce, "5×5", pool projection), torchvision's widths.
_INCEPTIONS = OrderedDict(
    inception3a=(192, 64, 96, 128, 16, 32, 32),
    inception3b=(256, 128, 128, 192, 32, 96, 64),
    inception4a=(480, 192, 96, 208, 16, 48, 64),
    inception4b=(512, 160, 112, 224, 24, 64, 64),
    inception4c=(512, 128, 128, 256, 24, 64, 64),
    inception4d=(512, 112, 144, 288, 32, 64, 64),
    inception4e=(528, 256, 160, 320, 32, 128, 128),
    inception5a=(832, 256, 160, 320, 32, 128, 128),
    inception5b=(832, 384, 192, 384, 48, 128, 128),
)
_POOL_BEFORE = {"inception3a": "maxpool2", "inception4a": "maxpool3", "inception5a": "maxpool4"}
_AUX_AFTER = {"inception4a": "aux1", "inception4d": "aux2"}


def inception_aux(in_channels, num_classes, dropout=0.7):
    """The auxiliary head: 5×5/3 average pool → 1×1 conv 128 → dense 1024 → dense classes."""
    return nn.Sequential(OrderedDict(
        pool=nn.AvgPool2d(5, stride=3),  # (in, 4, 4) from 14×14
        conv=nn.BasicConv2d(in_channels, 128, kernel_size=1),
        flatten=nn.Flatten(),  # (2048,)
        fc1=nn.Linear(2048, 1024),
        relu=nn.ReLU(),
        dropout=nn.Dropout(dropout),
        fc2=nn.Linear(1024, num_classes),
    ))


class GoogLeNet(nn.Module):
    """The Inception v1 network; see the module docstring for the auxiliary classifiers."""

    def __init__(self, num_classes=1000, in_channels=3, aux_logits=False, dropout=0.2, aux_dropout=0.7,
                 branch3_kernel_size=3):
        super().__init__()
        self.conv1 = nn.BasicConv2d(in_channels, 64, kernel_size=7, stride=2, padding=3)  # (64, 112, 112)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)  # (64, 56, 56)
        self.conv2 = nn.BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = nn.BasicConv2d(64, 192, kernel_size=3, padding=1)
        for name, widths in _INCEPTIONS.items():
            if name in _POOL_BEFORE:
                # 28×28, 14×14 and 7×7 at 224×224
                pool = nn.MaxPool2d(2 if name == "inception5a" else 3, stride=2, ceil_mode=True)
                self.add_module(_POOL_BEFORE[name], pool)
            self.add_module(name, nn.Inception(*widths, branch3_kernel_size=branch3_kernel_size))
        self.aux_logits = aux_logits
        if aux_logits:
            self.aux1 = inception_aux(512, num_classes, aux_dropout)
            self.aux2 = inception_aux(528, num_classes, aux_dropout)
        self.avgpool = nn.GlobalAvgPool2d()  # (1024,)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)
        self.aux_outputs = None
        init_convolutions(self, "normal", std=0.01)
        init_linears(self, "normal", std=0.01)

    def _trunk(self):
        """The main path's modules in order (everything but the auxiliary heads)."""
        return [(name, m) for name, m in self.named_children() if name not in ("aux1", "aux2")]

    def forward(self, x):
        use_aux = self.aux_logits and self.training
        aux = []
        for name, m in self._trunk():
            x = m(x)
            if use_aux and name in _AUX_AFTER:
                aux.append(getattr(self, _AUX_AFTER[name])(x))
        self.aux_outputs = tuple(aux) if use_aux else None
        self._cache = use_aux
        return x

    def backward(self, dy, aux_grads=None):
        """dx of the main logits' gradient `dy`, plus, when given, the auxiliary logits' gradients
        (a pair matching `aux_outputs`)."""
        used_aux = self._need_cache()
        if aux_grads is not None and not used_aux:
            raise ValueError(
                "GoogLeNet.backward: aux_grads were given but the last forward ran no auxiliary "
                "classifier (it needs aux_logits=True and training mode)"
            )
        if aux_grads is not None and len(aux_grads) != 2:
            raise ValueError(
                f"GoogLeNet.backward: aux_grads must be a pair (aux1, aux2), got {len(aux_grads)} arrays")
        aux_dx = {}
        if aux_grads is not None:
            aux_dx = {"inception4a": self.aux1.backward(aux_grads[0]),
                      "inception4d": self.aux2.backward(aux_grads[1])}
        for name, m in reversed(self._trunk()):
            if name in aux_dx:
                dy = dy + aux_dx[name]
            dy = m.backward(dy)
        return dy


def googlenet(num_classes=1000, in_channels=3, aux_logits=False, dropout=0.2, aux_dropout=0.7,
              branch3_kernel_size=3):
    return GoogLeNet(num_classes, in_channels, aux_logits, dropout, aux_dropout, branch3_kernel_size)
