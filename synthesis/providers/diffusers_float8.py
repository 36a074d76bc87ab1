"""A float8 linear layer for the ``fast`` profile: float8 weights and activations, row scales.

The recipe of torchao's "float8 dynamic activation, float8 weight, per row" on plain tensors:
the weight is quantised once, the activation at every call (dynamic), each with one float32
scale per row that maps the row's largest magnitude to float8's largest value. Under
``torch.compile`` the activation's scaling fuses into the kernel that produced it, and
``torch._scaled_mm`` multiplies on the float8 tensor cores, scaling the float32 accumulators
back to the input's dtype.
"""

from __future__ import annotations

import torch

F8 = torch.float8_e4m3fn
F8_MAX = float(torch.finfo(F8).max)


def row_scales(x: torch.Tensor) -> torch.Tensor:
    return x.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12) / F8_MAX


def to_float8(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (x.float() / scale).clamp(-F8_MAX, F8_MAX).to(F8)


class Float8Linear(torch.nn.Module):
    """``y = x W^T + b`` computed in float8 (a drop-in for an ``nn.Linear``)."""

    weight_t: torch.Tensor
    weight_scale: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        weight = weight.detach()
        scale = row_scales(weight)  # (out, 1)
        self.out_features, self.in_features = weight.shape
        # Kept as (in, out) in column-major order: the layout _scaled_mm takes for its B.
        self.register_buffer("weight_t", to_float8(weight, scale).t())
        self.register_buffer("weight_scale", scale.t().contiguous())  # (1, out)
        # Buffers, not parameters: an inference-only layer (_scaled_mm has no derivative).
        self.register_buffer("bias", None if bias is None else bias.detach())

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear) -> Float8Linear:
        return cls(linear.weight, linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        scale = row_scales(rows)
        out = torch._scaled_mm(
            to_float8(rows, scale),
            self.weight_t,
            scale_a=scale,
            scale_b=self.weight_scale,
            bias=self.bias,  # added in the product's epilogue, not in one more pass over out
            out_dtype=x.dtype,
        )
        return out.reshape(*x.shape[:-1], self.out_features)
