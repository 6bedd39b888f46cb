"""The one rule torchship compares numbers by: in export checks, in golden vectors (C++
`torchship check` and the load-time optimization check), and in the tests.

    |actual - expected| <= atol + rtol * |expected|      for every element of a float tensor;
                                                          integers, booleans and strings exactly.

What may legitimately change a float result is rounding: another summation order (AVX2 vs
AVX-512 kernels, oneDNN's blocking, conv-bn folding by the load-time optimizer) rounds each
partial sum differently. That error is proportional to the magnitude of the values summed, which
is the scale of the whole output, not of each element: a logit of 0.01 next to logits of 100
carries the absolute error of the 100s. Hence the defaults:

- rtol by precision: fp32 1e-4. A length-K dot product reordered differs by about sqrt(K) * u
  of its scale (u = 2**-24 ~ 6e-8 for fp32); through L layers that is L * sqrt(K) * u, 1.4e-4
  for ResNet34 (L = 34, K up to 4608) as a pessimistic sum; measured: 1.6e-6 of the scale
  between AVX-512 and AVX2 kernels. bf16 and int8 1e-2: bf16 keeps 8 significant bits
  (u = 2**-9 ~ 2e-3, a few units at most), int8 rounds to 1/255 of an activation's range.
- atol = rtol * max(1, largest |expected| of that output): the absolute part follows each
  output's scale, so that near-zero elements of a large-scale output get the error their
  neighbours make. The golden vectors record it per output tensor.
"""

import torch

DEFAULT_RTOL = {"fp32": 1e-4, "bf16": 1e-2, "int8": 1e-2}


def scaled_atol(rtol: float, expected: torch.Tensor) -> float:
    """The default absolute tolerance of one output tensor."""
    largest = 0.0
    if expected.is_floating_point() and expected.numel():
        largest = float(expected.detach().double().abs().nan_to_num(0.0, 0.0, 0.0).max())
    return rtol * max(1.0, largest)
