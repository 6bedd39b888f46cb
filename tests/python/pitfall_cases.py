"""One minimal module per TorchScript pitfall of docs/pitfalls.md (the founding article's list),
each written the way that fails. test_doctor.py checks what the doctor says about them."""

import math
import typing
from typing import Optional

import torch
from torch import Tensor, nn

SCALE = [1.0, 2.0]


class NoneThenTensor(nn.Module):
    def forward(self, x):
        y = None
        if x.max() > 0:
            y = x
        return y


class IntFloatBranches(nn.Module):
    def forward(self, x):
        if x.max() > 0:
            y = 1.25
        else:
            y = 0
        return y


class EmptyList(nn.Module):
    def forward(self, x):
        sizes = []
        for i in range(x.dim()):
            sizes.append(x.size(i))
        return sizes


class EmptyDict(nn.Module):
    def forward(self, x):
        counts = {}
        counts["rows"] = x.size(0)
        return counts


class TypingList(nn.Module):
    def forward(self, xs: typing.List[Tensor]):
        return xs[0]


class OptionalUnrefined(nn.Module):
    def forward(self, x: Tensor, bias: Optional[Tensor] = None):
        return x + bias


class TensorConstructor(nn.Module):
    def forward(self, x):
        return x + torch.Tensor([1.0, 2.0])


class UsesMath(nn.Module):
    def forward(self, x):
        return x * math.pi


class GlobalVariable(nn.Module):
    def forward(self, x):
        return x * SCALE[0]


class TupleSlice(nn.Module):
    def __init__(self):
        super().__init__()
        self.n = 2

    def forward(self, x):
        outputs = (x, x + 1, x + 2)
        return outputs[: self.n]


class ClampTensor(nn.Module):
    def forward(self, x):
        return x.clamp(min=x.mean())


class MaskedScalar(nn.Module):
    def forward(self, x):
        x[x < 0] = 0
        return x


class UntypedArgument(nn.Module):
    def forward(self, x, k):
        return x * k


# torch.export's pitfalls (docs/pitfalls.md, "torch.export and AOTInductor"): each fails
# torch.export.export the way the comment says.


class DataDependentBranch(nn.Module):
    """Branches on a tensor's values: GuardOnDataDependentSymNode."""

    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x - 1


class NumpyInForward(nn.Module):
    """Leaves torch for numpy: fake tensors have no data (non-strict export)."""

    def forward(self, x):
        return torch.from_numpy(x.numpy() * 2)


class FileInForward(nn.Module):
    """Python I/O in forward: dynamo's Unsupported (strict export)."""

    def forward(self, x):
        with open(__file__) as f:
            f.readline()
        return x + 1


class ReshapeByTwo(nn.Module):
    """Only works for even sizes of dim 0: a dynamic batch Dim violates the constraint."""

    def forward(self, x):
        return x.reshape(2, -1, x.size(1))
