"""Full-band multi-head self-attention across frames (the TF-GridNet attention)."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from spmamba_sb.nnet.norms import LayerNorm4DCF

# Without autograd, queries are attended in blocks of this many frames: the output is the
# same, and the [B, heads, block, T] scores of PyTorch's unfused kernel (used for fp32
# queries this wide) stay bounded on long inputs.
INFERENCE_QUERY_BLOCK = 1024


class _PointwiseConv(torch.autograd.Function):
    """``F.conv2d`` with a 1x1 kernel, whose weight gradient is one batched product per frame.

    cuDNN computes the weight gradient of a 16 -> 16-channel 1x1 convolution over [1, 16, 501,
    257] inputs (the published model's value and output projections) as one product with
    128,757-long rows, through a GEMV-like kernel: 1.3 ms on an H200 for 4 MFLOP. Here it is
    B * T products of [out, F] x [F, in], summed in fp32 (or wider). Input gradient and forward stay
    convolutions (in the forward's dtype under autocast).
    """

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return F.conv2d(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        accumulate = torch.promote_types(grad.dtype, torch.float32)
        if ctx.needs_input_grad[0]:
            grad_x = F.conv2d(grad, weight.to(grad.dtype).transpose(0, 1)).to(x.dtype)
        if ctx.needs_input_grad[1]:
            per_frame = grad.to(accumulate).transpose(1, 2).flatten(0, 1)  # [B*T, out, F]
            inputs = x.to(accumulate).transpose(1, 2).flatten(0, 1)  # [B*T, in, F]
            grad_weight = torch.bmm(per_frame, inputs.transpose(1, 2)).sum(0).view_as(weight).to(weight.dtype)
        if ctx.needs_input_grad[2]:  # False without a bias
            grad_bias = grad.to(accumulate).sum((0, 2, 3)).to(weight.dtype)
        return grad_x, grad_weight, grad_bias


class HeadProjection(nn.Module):
    """1x1 conv, then PReLU and (channel, frequency) LayerNorm per head.

    All heads run in one convolution; head h owns output channels
    ``h * head_dim : (h + 1) * head_dim``, its own PReLU slope and its own norm group.

    Arguments
    ---------
    input_dim : int
        Input channels D.
    num_heads : int
        Heads.
    head_dim : int
        Output channels per head.
    n_freqs : int
        Frequency bins F.
    eps : float
        Norm epsilon.

    Example
    -------
    >>> HeadProjection(8, num_heads=2, head_dim=3, n_freqs=5)(torch.randn(1, 8, 4, 5)).shape
    torch.Size([1, 6, 4, 5])
    """

    def __init__(self, input_dim: int, num_heads: int, head_dim: int, n_freqs: int, eps: float = 1e-5):
        super().__init__()
        self.num_heads = num_heads
        self.conv = nn.Conv2d(input_dim, num_heads * head_dim, kernel_size=1)
        self.act = nn.PReLU(num_parameters=num_heads)
        self.norm = LayerNorm4DCF(num_heads * head_dim, n_freqs, num_groups=num_heads, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, D, T, F] -> [B, num_heads * head_dim, T, F]."""
        y = _PointwiseConv.apply(x, self.conv.weight, self.conv.bias)  # [B, heads*head_dim, T, F]
        batch, channels, n_frames, n_freqs = y.shape
        y = self.act(y.view(batch, self.num_heads, -1, n_frames, n_freqs)).view_as(y)
        return self.norm(y)


class FullBandAttention(nn.Module):
    """Residual multi-head self-attention over frames, each frame flattened over (channels, F).

    Per head, queries and keys have E * F features with ``E = ceil(attention_qk_dim / F)``
    and values (D / num_heads) * F; attention runs through
    ``torch.nn.functional.scaled_dot_product_attention`` (scale ``1 / sqrt(E * F)``).

    Arguments
    ---------
    emb_dim : int
        Channels D.
    n_freqs : int
        Frequency bins F.
    num_heads : int
        Heads; must divide ``emb_dim``.
    attention_qk_dim : int
        Approximate query/key width per head, E * F.
    eps : float
        Norm epsilon.

    Example
    -------
    >>> attention = FullBandAttention(emb_dim=8, n_freqs=5, num_heads=2, attention_qk_dim=10)
    >>> attention(torch.randn(1, 8, 4, 5)).shape
    torch.Size([1, 8, 4, 5])
    """

    def __init__(
        self, emb_dim: int, n_freqs: int, num_heads: int = 4, attention_qk_dim: int = 512, eps: float = 1e-5
    ):
        super().__init__()
        if emb_dim % num_heads:
            raise ValueError(f"emb_dim={emb_dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        qk_dim = math.ceil(attention_qk_dim / n_freqs)
        self.query = HeadProjection(emb_dim, num_heads, qk_dim, n_freqs, eps)
        self.key = HeadProjection(emb_dim, num_heads, qk_dim, n_freqs, eps)
        self.value = HeadProjection(emb_dim, num_heads, emb_dim // num_heads, n_freqs, eps)
        self.output = HeadProjection(emb_dim, 1, emb_dim, n_freqs, eps)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, heads*C, T, F] -> [B, heads, T, C*F]."""
        batch, channels, n_frames, n_freqs = x.shape
        x = x.view(batch, self.num_heads, channels // self.num_heads, n_frames, n_freqs)
        return x.transpose(2, 3).reshape(batch, self.num_heads, n_frames, -1)  # [B, heads, T, C*F]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, D, T, F] -> [B, D, T, F]."""
        batch, channels, n_frames, n_freqs = x.shape
        query = self._split_heads(self.query(x))  # [B, heads, T, E*F]
        key = self._split_heads(self.key(x))  # [B, heads, T, E*F]
        value = self._split_heads(self.value(x))  # [B, heads, T, (D/heads)*F]
        if torch.is_grad_enabled():
            attended = F.scaled_dot_product_attention(query, key, value)  # [B, heads, T, (D/heads)*F]
        else:
            attended = torch.cat([
                F.scaled_dot_product_attention(block, key, value)
                for block in query.split(INFERENCE_QUERY_BLOCK, dim=2)
            ], dim=2)  # [B, heads, T, (D/heads)*F]
        attended = attended.view(batch, self.num_heads, n_frames, -1, n_freqs)  # [B, heads, T, D/heads, F]
        attended = attended.transpose(2, 3).reshape(batch, channels, n_frames, n_freqs)  # [B, D, T, F]
        return x + self.output(attended)
