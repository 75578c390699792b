"""HyenaRec: Legendre-kernel Hyena long convolutions plus gated short convolutions for next-item recommendation.

Reads top to bottom: the Legendre basis and the long causal convolution (functions) -> the kernel generators ->
the token mixer (`HyenaRecMixer`) -> the block (`HyenaRecBlock`) -> the backbone (`HyenaRecModel`) -> the task head
(`HyenaRecForNextItemPrediction`).

This file ships next to the weights on the Hub (``trust_remote_code=True``): it imports only torch and transformers,
and the configuration through a relative import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput, logging

from .configuration_hyenarec import HyenaRecConfig
from .next_item import Dropout, NextItemMixin, NextItemPredictionOutput

logger = logging.get_logger(__name__)


# ----------------------------------------------------------------------------------------------------------------------
# Legendre basis and long causal convolution
# ----------------------------------------------------------------------------------------------------------------------


def legendre_basis(order: int, length: int) -> torch.Tensor:
    """Orthonormal shifted Legendre polynomials on an endpoint grid of `length` points in [0, 1].

    Returns a float64 tensor of shape `(order, length)` with row n equal to `sqrt(2n+1) * P_n(2t - 1)`,
    `t_i = i / (length - 1)`, computed with the three-term (Bonnet) recurrence in float64.
    """
    if length < 2:
        raise ValueError(f"legendre_basis needs length >= 2 grid points, got {length}.")
    x = torch.linspace(-1.0, 1.0, length, dtype=torch.float64, device="cpu")
    p = torch.empty(order, length, dtype=torch.float64, device="cpu")
    p[0] = 1.0
    if order > 1:
        p[1] = x
    for n in range(1, order - 1):
        p[n + 1] = ((2 * n + 1) * x * p[n] - n * p[n - 1]) / (n + 1)
    norm = torch.sqrt(2.0 * torch.arange(order, dtype=torch.float64, device="cpu") + 1.0)
    return p * norm[:, None]


def _next_fast_fft_len(n: int) -> int:
    """Smallest 5-smooth integer >= n (pocketfft/MKL are fastest on those; powers of two are often slower)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def toeplitz_matrix(kernel: torch.Tensor) -> torch.Tensor:
    """Lower-triangular Toeplitz matrices `T[d, t, s] = kernel[d, t - s]` for t >= s, else 0.

    `kernel` is `(channels, seq_len)`; returns `(channels, seq_len, seq_len)`. Batch-independent: it is built from the
    kernel, never from activations.
    """
    channels, length = kernel.shape
    # With p[d, i] = kernel[d, L-1-i] (zero for i >= L), T[d, t, s] = p[d, L-1-t+s]: a window view of p with its rows
    # read backwards. One strided copy, ~10x faster on CPU than gathering through an (L, L) index.
    padded = torch.cat([kernel.flip(-1), kernel.new_zeros(channels, length - 1)], dim=1)
    return padded.as_strided((channels, length, length), (padded.stride(0), 1, 1)).flip(1)


def _toeplitz_kernel_grad(grad_matrix: torch.Tensor) -> torch.Tensor:
    """Gradient of `toeplitz_matrix` w.r.t. the kernel: the sums of the lower diagonals, `(C, L, L) -> (C, L)`."""
    channels, length, _ = grad_matrix.shape
    # Left-pad each row by L zeros: entry (t, t - lag) then sits at flat offset t * (2L + 1) + L - lag, so lag
    # L - 1 - i is row i of a strided view with step 2L + 1; entries above the diagonal fall in the zero padding.
    padded = F.pad(grad_matrix, (length, 0))
    diagonals = padded.as_strided(
        (channels, length, length), (padded.stride(0), 1, 2 * length + 1), padded.storage_offset() + 1
    )
    return diagonals.sum(-1).flip(-1)


class _FFTCausalConv(torch.autograd.Function):
    """Zero-padded FFT convolution `irfft(rfft(u) * rfft(kernel))[..., :L]` with a hand-written backward.

    The backward needs one real FFT of the output gradient and two inverse real FFTs (one of them batch-reduced, for
    the kernel); autograd's generic rfft/irfft backward pads, runs complex-to-complex transforms and keeps more
    intermediates. `u` is `(..., C, L)` and `kernel` broadcasts against it.
    """

    @staticmethod
    def forward(ctx, u: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        length = u.shape[-1]
        n = _next_fast_fft_len(2 * length)
        u_f = torch.fft.rfft(u, n=n)
        k_f = torch.fft.rfft(kernel, n=n)
        ctx.save_for_backward(u_f, k_f)
        ctx.length, ctx.n = length, n
        return torch.fft.irfft(u_f * k_f, n=n)[..., :length]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        u_f, k_f = ctx.saved_tensors
        length, n = ctx.length, ctx.n
        # The adjoint of a causal convolution is the anti-causal correlation: multiply by the conjugate spectrum. With
        # n >= 2L - 1 the circular wrap-around lands in the zero padding, so both gradients are exact.
        g_f = torch.fft.rfft(grad, n=n)
        grad_u = grad_k = None
        if ctx.needs_input_grad[1]:
            grad_k = torch.fft.irfft((g_f * u_f.conj()).sum_to_size(k_f.shape), n=n)[..., :length]
        if ctx.needs_input_grad[0]:
            grad_u = torch.fft.irfft(g_f.mul_(k_f.conj()), n=n)[..., :length]
        return grad_u, grad_k


class _ToeplitzCausalConv(torch.autograd.Function):
    """Causal convolution as one GEMM per channel, `(C, B, L) @ (C, L, L)^T`, with a hand-written backward.

    The Toeplitz matrix is built once in the forward and reused by the backward; the kernel gradient is the diagonal
    sums of `grad^T @ u`, instead of autograd scattering an `(L, L)` gradient back through the gather.
    """

    @staticmethod
    def forward(ctx, u: torch.Tensor, kernel: torch.Tensor, matrix: torch.Tensor | None) -> torch.Tensor:
        matrix = toeplitz_matrix(kernel) if matrix is None else matrix
        u_cbl = u.transpose(0, 1)
        ctx.save_for_backward(u_cbl, matrix)
        return torch.bmm(u_cbl, matrix.transpose(1, 2)).transpose(0, 1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        u_cbl, matrix = ctx.saved_tensors
        grad_cbl = grad.transpose(0, 1)
        grad_u = grad_k = None
        if ctx.needs_input_grad[0]:
            grad_u = torch.bmm(grad_cbl, matrix).transpose(0, 1)
        if ctx.needs_input_grad[1]:
            grad_k = _toeplitz_kernel_grad(torch.bmm(grad_cbl.transpose(1, 2), u_cbl))
        return grad_u, grad_k, None


def causal_conv(u: torch.Tensor, kernel: torch.Tensor, impl: str = "fft", toeplitz: torch.Tensor | None = None):
    """Causal long convolution along the last dimension: `y[..., d, t] = sum_{s<=t} kernel[d, t-s] * u[..., d, s]`.

    Args:
        u: `(batch, channels, seq_len)` input. Any memory layout; a transposed view of a contiguous
            `(channels, batch, seq_len)` tensor (as `HyenaRecMixer` passes) is transformed without copies.
        kernel: `(channels, seq_len)` kernel (lag 0 first).
        impl: `"fft"` (zero-padded to n >= 2L, never circular), `"toeplitz"` (batched GEMM) or `"direct"` (O(L^2)
            reference loop, for tests).
        toeplitz: optional precomputed `toeplitz_matrix(kernel)` (eval-mode cache).

    Returns `(batch, channels, seq_len)` in float32 (or float64 when the inputs are float64); autocast is off inside.
    The fft and toeplitz paths have hand-written backward passes (first-order gradients only).
    """
    length = u.shape[-1]
    dtype = torch.float64 if u.dtype == torch.float64 or kernel.dtype == torch.float64 else torch.float32
    with torch.autocast(device_type=u.device.type, enabled=False):
        u = u.to(dtype)
        kernel = kernel.to(dtype)
        if impl == "fft":
            if u.dim() == 3 and not u.is_contiguous() and u.transpose(0, 1).is_contiguous():
                # Channel-major storage: run along the contiguous rows of (channels, batch, L).
                return _FFTCausalConv.apply(u.transpose(0, 1), kernel[:, None]).transpose(0, 1)
            return _FFTCausalConv.apply(u, kernel)
        if impl == "toeplitz":
            matrix = None if toeplitz is None else toeplitz.to(dtype)
            if matrix is not None and matrix.requires_grad:  # a differentiable matrix: let autograd see the GEMM
                return torch.bmm(u.transpose(0, 1), matrix.transpose(1, 2)).transpose(0, 1)
            # (channels, batch, L) @ (channels, L, L)^T: one GEMM per channel over the whole batch.
            return _ToeplitzCausalConv.apply(u, kernel, matrix)
        if impl == "direct":
            y = u * kernel[:, :1]
            for lag in range(1, length):
                y = y + F.pad(u[..., : length - lag], (lag, 0)) * kernel[:, lag : lag + 1]
            return y
    raise ValueError(f"Unknown long-convolution implementation {impl!r}; use 'fft', 'toeplitz' or 'direct'.")


class _ShiftAddDepthwiseConv(torch.autograd.Function):
    """Causal depthwise convolution of width k as k shifted multiply-adds along the time axis (CPU fast path).

    Works in the memory layout of `u` (channel-major included) and is ~2x faster than `F.conv1d` forward on CPU,
    whose depthwise backward is slow; the weight gradient is k multiply-reduce passes.
    """

    @staticmethod
    def forward(ctx, u: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        k, length = weight.shape[-1], u.shape[-1]
        taps = weight[:, 0, :, None]  # taps[:, j] is (channels, 1): broadcasts over (batch, channels, L)
        y = u * taps[:, k - 1]
        if bias is not None:
            y += bias[:, None]
        for lag in range(1, min(k, length)):
            y[..., lag:].addcmul_(u[..., :-lag], taps[:, k - 1 - lag])
        ctx.save_for_backward(u, weight)
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        u, weight = ctx.saved_tensors
        k, length = weight.shape[-1], u.shape[-1]
        taps = weight[:, 0, :, None]
        dims = [dim for dim in range(u.dim()) if dim != u.dim() - 2]  # all but channels
        grad_u = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_u = grad * taps[:, k - 1]
            for lag in range(1, min(k, length)):
                grad_u[..., :-lag].addcmul_(grad[..., lag:], taps[:, k - 1 - lag])
        if ctx.needs_input_grad[1]:
            grad_w = torch.zeros_like(weight)
            for lag in range(min(k, length)):
                grad_w[:, 0, k - 1 - lag] = (grad[..., lag:] * u[..., : length - lag]).sum(dims)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(dims)
        return grad_u, grad_w, grad_b


def causal_depthwise_conv(u: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Causal depthwise convolution of width k: `(batch, channels, seq_len)` -> same shape; weight `(channels, 1, k)`."""
    if u.device.type == "cpu" and u.dtype == weight.dtype and not torch.is_autocast_enabled("cpu"):
        return _ShiftAddDepthwiseConv.apply(u, weight, bias)
    k = weight.shape[-1]
    return F.conv1d(F.pad(u, (k - 1, 0)), weight, bias, groups=u.shape[1])


# ----------------------------------------------------------------------------------------------------------------------
# Kernel generators
# ----------------------------------------------------------------------------------------------------------------------


def _kernel_dtype(parameter: torch.Tensor) -> torch.dtype:
    """Kernels are computed in float32 at least (float64 when the model is float64), never in half precision."""
    return torch.float64 if parameter.dtype == torch.float64 else torch.float32


def _decay_rates(config: HyenaRecConfig, channels: int) -> torch.Tensor:
    """Per-channel decay rates in normalised time t in [0, 1]: channel d falls to `decay_target` between
    `decay_fast_pct` and `decay_slow_pct` of l_max (Hyena's ExponentialModulation defaults)."""
    log_target = math.log(config.decay_target)
    slow, fast = -log_target / config.decay_slow_pct, -log_target / config.decay_fast_pct
    return torch.linspace(slow, fast, channels, dtype=torch.float64, device="cpu")


class LegendreKernel(nn.Module):
    """`K_d(t) = exp(-softplus(a_d) t) * sum_{n<N} c_{d,n} sqrt(2n+1) P_n(2t - 1)` on the fixed l_max grid.

    Parameters: `coefficients` `(channels, N)`, `decay` `(channels,)` (pre-softplus rates). The basis is a
    non-persistent float32 buffer rebuilt by `_init_weights` (so a meta-device load gets it right).
    """

    def __init__(self, config: HyenaRecConfig, channels: int):
        super().__init__()
        self.config = config
        self.channels = channels
        self.order = config.legendre_order
        self.max_length = config.max_position_embeddings
        self.coefficients = nn.Parameter(torch.empty(channels, self.order))
        self.decay = nn.Parameter(torch.empty(channels))
        self.register_buffer("basis", torch.empty(self.order, self.max_length), persistent=False)
        self.register_buffer("positions", torch.empty(self.max_length), persistent=False)
        self.reset_buffers()

    @torch.no_grad()
    def reset_buffers(self) -> None:
        device = self.basis.device
        if device.type == "meta":  # built on the meta device by from_pretrained: _init_weights fills it later
            return
        self.basis = legendre_basis(self.order, self.max_length).to(device=device, dtype=torch.float32)
        self.positions = torch.linspace(0.0, 1.0, self.max_length, dtype=torch.float32, device="cpu").to(device)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        rates = _decay_rates(self.config, self.channels)
        # softplus^-1(rate) = rate + log(1 - exp(-rate)), in float64 for accuracy.
        init.copy_(self.decay, (rates + torch.log(-torch.expm1(-rates))).to(self.decay.dtype))
        # Coefficient scale so that each initial kernel has an L2 norm of about 1 over the grid; more weight on low
        # degrees (smooth kernels first).
        std = torch.sqrt(2.0 * rates / (self.order * self.max_length)).float()
        degree_scale = 1.0 / torch.sqrt(torch.arange(1, self.order + 1, dtype=torch.float32, device="cpu"))
        noise = torch.randn(self.channels, self.order, device=self.coefficients.device)
        scale = (std[:, None] * degree_scale[None, :] * 2.0).to(noise.device)
        init.copy_(self.coefficients, noise * scale)

    def forward(self, length: int) -> torch.Tensor:
        """Kernel of shape `(channels, length)` in float32 (the first `length` lags of the l_max grid)."""
        dtype = _kernel_dtype(self.coefficients)
        with torch.autocast(device_type=self.basis.device.type, enabled=False):
            basis = self.basis[:, :length].to(dtype)
            rates = F.softplus(self.decay.to(dtype))
            envelope = torch.exp(-rates[:, None] * self.positions[None, :length].to(dtype))
            return (self.coefficients.to(dtype) @ basis) * envelope


class ImplicitKernel(nn.Module):
    """Hyena's implicit filter: a sine-activated MLP over complex-exponential position features, times a fixed
    exponential decay (Poli et al., 2023, `HyenaFilter`)."""

    def __init__(self, config: HyenaRecConfig, channels: int):
        super().__init__()
        self.config = config
        self.channels = channels
        self.max_length = config.max_position_embeddings
        self.emb_dim = config.implicit_filter_emb_dim
        width = config.implicit_filter_order
        self.mlp = nn.ModuleList([nn.Linear(self.emb_dim, width), nn.Linear(width, width), nn.Linear(width, width)])
        self.output = nn.Linear(width, channels, bias=False)
        self.frequency = nn.Parameter(torch.empty(1, width))
        self.register_buffer("features", torch.empty(self.max_length, self.emb_dim), persistent=False)
        self.register_buffer("decay_rates", torch.empty(channels), persistent=False)
        self.register_buffer("positions", torch.empty(self.max_length), persistent=False)
        self.reset_buffers()

    @torch.no_grad()
    def reset_buffers(self) -> None:
        device = self.features.device
        if device.type == "meta":  # built on the meta device by from_pretrained: _init_weights fills it later
            return
        t = torch.linspace(0.0, 1.0, self.max_length, dtype=torch.float64, device="cpu")
        bands = (self.emb_dim - 1) // 2
        freqs = torch.linspace(1e-4, bands - 1, bands, dtype=torch.float64, device="cpu")
        angle = (
            2 * math.pi * torch.arange(self.max_length, dtype=torch.float64, device="cpu")[:, None] / self.max_length
        )
        features = torch.cat([t[:, None], torch.cos(freqs * angle), -torch.sin(freqs * angle)], dim=1)
        self.features = features.to(device=device, dtype=torch.float32)
        self.decay_rates = _decay_rates(self.config, self.channels).to(device=device, dtype=torch.float32)
        self.positions = t.to(device=device, dtype=torch.float32)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        init.ones_(self.frequency)

    def forward(self, length: int) -> torch.Tensor:
        dtype = _kernel_dtype(self.frequency)
        with torch.autocast(device_type=self.features.device.type, enabled=False):
            h = self.features[:length].to(dtype)
            for layer in self.mlp:
                h = torch.sin(self.frequency.to(dtype) * F.linear(h, layer.weight.to(dtype), layer.bias.to(dtype)))
            kernel = F.linear(h, self.output.weight.to(dtype)).transpose(0, 1)  # (channels, length)
            envelope = torch.exp(-self.decay_rates[:, None].to(dtype) * self.positions[None, :length].to(dtype))
            return kernel * envelope


class LongConvKernel(nn.Module):
    """The long-convolution kernel of one mixer (`filter_type` picks Legendre, implicit or their sum) plus the
    per-channel skip `D`. In eval mode without autograd, the kernel (and its Toeplitz matrix) is cached and recomputed
    only when the length, implementation, device or a parameter changes."""

    def __init__(self, config: HyenaRecConfig, channels: int):
        super().__init__()
        self.legendre = LegendreKernel(config, channels) if config.filter_type in ("legendre", "hybrid") else None
        self.implicit = ImplicitKernel(config, channels) if config.filter_type in ("implicit", "hybrid") else None
        self.skip = nn.Parameter(torch.empty(channels))
        self._cache: tuple | None = None

    def _version(self) -> tuple:
        return tuple((p.data_ptr(), p._version) for p in self.parameters())

    def forward(self, length: int, impl: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns `(kernel (channels, length), toeplitz (channels, length, length) or None)`."""
        use_cache = not self.training and not torch.is_grad_enabled()
        if use_cache and self._cache is not None and self._cache[0] == (length, impl, self._version()):
            return self._cache[1], self._cache[2]
        kernel = 0.0
        if self.legendre is not None:
            kernel = kernel + self.legendre(length)
        if self.implicit is not None:
            kernel = kernel + self.implicit(length)
        toeplitz = None
        if use_cache:
            toeplitz = toeplitz_matrix(kernel) if impl == "toeplitz" else None
            self._cache = ((length, impl, self._version()), kernel, toeplitz)
        else:
            self._cache = None
        return kernel, toeplitz


# ----------------------------------------------------------------------------------------------------------------------
# Token mixer, block, backbone, head
# ----------------------------------------------------------------------------------------------------------------------


class HyenaRecMixer(nn.Module):
    """Order-2 Hyena recurrence with a Legendre kernel, plus a gated short convolution (GLU).

    One GEMM projects `D -> 5D` (q, g, v for the long branch; a, b for the short branch); one causal depthwise conv
    runs over q, g, v and a; padded positions are zeroed before and after it, so padding never reaches real positions.

        z = g * v;  z = K * z + D * z;  y_long = q * z;  y_short = a * sigmoid(b);  out = out_proj(y_long + y_short)
    """

    def __init__(self, config: HyenaRecConfig):
        super().__init__()
        d = config.hidden_size
        self.config = config
        self.hidden_size = d
        self.use_long = config.use_long_branch
        self.use_short = config.use_short_branch
        self.num_conv_streams = 3 * self.use_long + self.use_short
        self.num_streams = self.num_conv_streams + self.use_short
        self.in_proj = nn.Linear(d, self.num_streams * d)
        # The mixer multiplies three projections (q * K(g * v)): with a BERT-sized init they start near zero and the
        # gates learn slowly, so the projections get their own init scale (Hyena uses PyTorch's default, ~1/sqrt(3D)).
        self.in_proj.init_std = config.mixer_init_std
        conv_channels = self.num_conv_streams * d
        self.short_conv_weight = nn.Parameter(torch.empty(conv_channels, 1, config.short_conv_kernel_size))
        self.short_conv_bias = nn.Parameter(torch.empty(conv_channels))
        self.kernel = LongConvKernel(config, d) if self.use_long else None
        self.fusion_gate = (
            nn.Parameter(torch.empty(d)) if config.branch_fusion == "gate" and self.num_streams == 5 else None
        )
        self.out_proj = nn.Linear(d, d)
        self.mixer_dropout = Dropout(config.mixer_dropout_prob)

    def conv_impl(self, length: int, device: torch.device) -> str:
        impl = self.config.conv_impl
        if impl != "auto":
            return impl
        if device.type != "cpu":  # the threshold was measured on CPU; cuFFT is fast at every length
            return "fft"
        return "toeplitz" if length <= self.config.conv_auto_threshold else "fft"

    @staticmethod
    def kernel_mass(kernel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`long_conv_normalization="mass"`: `sum_{l < n_t} |K_l|` per channel and position, `(batch, channels,
        seq_len)`, with `n_t` the real items up to t (a history's items are contiguous, left or right padded, so they
        sit at lags 0 .. n_t - 1). O(channels * batch * seq_len): a gather from the kernel's cumulative sum, no second
        convolution. Padded positions before the first item get `|K_0|` (their convolution output is 0 anyway)."""
        cumulative = kernel.abs().cumsum(-1)  # (channels, length), the kernel's float32 (or float64)
        counts = mask.float().cumsum(-1).long().sub_(1).clamp_(min=0)  # (batch, 1, length)
        batch, _, length = counts.shape
        mass = cumulative[:, counts.reshape(-1)].reshape(-1, batch, length).transpose(0, 1)
        return mass.clamp_min(torch.finfo(mass.dtype).tiny)

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`hidden_states` `(batch, seq_len, hidden)`, `mask` `(batch, 1, seq_len)` float -> `(batch, seq_len, hidden)`."""
        d = self.hidden_size
        batch, length, _ = hidden_states.shape
        # Channel-major layout, (channels, batch, seq_len), from in_proj to out_proj: both projections are single GEMMs
        # on transposed operands, every stream is a contiguous slice and the convolutions run along contiguous rows,
        # so nothing is ever transposed in memory (forward or backward). A wrapped projection (LoRA, quantised) is
        # called as a module instead.
        flat = hidden_states.reshape(batch * length, d)
        if type(self.in_proj) is nn.Linear:
            streams = torch.addmm(self.in_proj.bias[:, None], self.in_proj.weight, flat.t())
        else:
            streams = self.in_proj(flat).t()
        streams = streams.reshape(-1, batch, length)
        mask = mask.to(streams.dtype)
        streams = streams * mask.transpose(0, 1)
        conv_channels = self.num_conv_streams * d
        conv_in, gate_b = streams.split([conv_channels, streams.shape[0] - conv_channels])
        conv_out = causal_depthwise_conv(conv_in.transpose(0, 1), self.short_conv_weight, self.short_conv_bias)
        conv_out = conv_out.mul_(mask).transpose(0, 1)  # in place on the conv output, not on a view of it
        conv_streams = conv_out.split(d)
        y = None
        if self.use_long:
            q, g, v = conv_streams[:3]
            z = self.mixer_dropout(g * v)
            impl = self.conv_impl(length, hidden_states.device)
            kernel, toeplitz = self.kernel(length, impl)
            long = causal_conv(z.transpose(0, 1), kernel, impl, toeplitz)
            if self.config.long_conv_normalization == "mass":
                long = long / self.kernel_mass(kernel, mask)
            long = long.transpose(0, 1).to(z.dtype)
            z = torch.addcmul(long, self.kernel.skip[:, None, None].to(z.dtype), z)
            y = q * z
        if self.use_short:
            gate = torch.sigmoid(gate_b)
            if y is None:
                y = conv_streams[-1] * gate
            elif self.fusion_gate is not None:
                mix = torch.sigmoid(self.fusion_gate)[:, None, None].to(y.dtype)
                y = mix * y + (1.0 - mix) * (conv_streams[-1] * gate)
            else:
                y = y.addcmul_(conv_streams[-1], gate)  # autograd keeps q and z, not q * z: the sum can go in place
        y = y.reshape(d, batch * length).t()
        if type(self.out_proj) is nn.Linear:
            out = torch.addmm(self.out_proj.bias, y, self.out_proj.weight.t())
        else:
            out = self.out_proj(y)
        return out.reshape(batch, length, d)


class HyenaRecFeedForward(nn.Module):
    def __init__(self, config: HyenaRecConfig):
        super().__init__()
        self.up = nn.Linear(config.hidden_size, config.intermediate_size)
        self.down = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.down(self.dropout(F.gelu(self.up(hidden_states))))


class HyenaRecBlock(GradientCheckpointingLayer):
    """Pre-norm residual block: `x + dropout(mixer(LN(x)))`, then `x + dropout(FFN(LN(x)))`."""

    def __init__(self, config: HyenaRecConfig):
        super().__init__()
        self.mixer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mixer = HyenaRecMixer(config)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = HyenaRecFeedForward(config)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states + self.dropout(self.mixer(self.mixer_norm(hidden_states), mask))
        return hidden_states + self.dropout(self.ffn(self.ffn_norm(hidden_states)))


@dataclass
class HyenaRecModelOutput(ModelOutput):
    """Backbone output.

    Args:
        last_hidden_state: `(batch, seq_len, hidden)` after the final layer norm.
        hidden_states: tuple of `(batch, seq_len, hidden)`, the embeddings and each block's output, when
            `output_hidden_states=True`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


class HyenaRecPreTrainedModel(NextItemMixin, PreTrainedModel):
    config_class = HyenaRecConfig
    config: HyenaRecConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["HyenaRecBlock"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        # `init.*` leave tensors that were loaded from a checkpoint untouched (transformers 5 marks them).
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=getattr(module, "init_std", None) or std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            weight = torch.randn(module.weight.shape, device=module.weight.device) * std
            if module.padding_idx is not None:
                weight[module.padding_idx] = 0.0
            init.copy_(module.weight, weight)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, (LegendreKernel, ImplicitKernel)):
            module.reset_buffers()
            module.reset_parameters()
        elif isinstance(module, LongConvKernel):
            init.normal_(module.skip, mean=0.0, std=1.0)
            module._cache = None
        elif isinstance(module, HyenaRecMixer):
            # Conv weights start near an identity on the current position (plus noise), so the gates see the
            # current item at init.
            weight = torch.randn(module.short_conv_weight.shape, device=module.short_conv_weight.device) * 0.1
            weight[:, 0, -1] += 1.0
            init.copy_(module.short_conv_weight, weight)
            init.zeros_(module.short_conv_bias)
            if module.fusion_gate is not None:
                init.zeros_(module.fusion_gate)

    def load_state_dict(self, *args, **kwargs):
        result = super().load_state_dict(*args, **kwargs)
        self.clear_kernel_cache()
        return result

    def train(self, mode: bool = True):
        self.clear_kernel_cache()
        return super().train(mode)

    def clear_kernel_cache(self) -> None:
        """Forget cached eval-mode kernels (done on `train()`, on weight load and whenever a parameter changes)."""
        for module in self.modules():
            if isinstance(module, LongConvKernel):
                module._cache = None


class HyenaRecModel(HyenaRecPreTrainedModel):
    """The HyenaRec backbone: item embeddings -> blocks -> final layer norm, `(batch, seq_len, hidden)` out."""

    def __init__(self, config: HyenaRecConfig):
        super().__init__(config)
        self.item_embeddings = nn.Embedding(config.num_items + 1, config.hidden_size, padding_idx=0)
        self.position_embeddings = (
            nn.Embedding(config.max_position_embeddings, config.hidden_size) if config.use_position_embeddings else None
        )
        self.dropout = Dropout(config.hidden_dropout_prob)
        self.layers = nn.ModuleList([HyenaRecBlock(config) for _ in range(config.num_hidden_layers)])
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.item_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.item_embeddings = value

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> HyenaRecModelOutput | tuple:
        """Encode item histories.

        Args:
            input_ids: `(batch, seq_len)` item indices, 0 = padding (left padding, the most recent item last).
            attention_mask: `(batch, seq_len)`, 1 for real items; derived from `input_ids != 0` when omitted.
                Histories longer than `max_position_embeddings` must be cut to their most recent items first.
        """
        self._validate_input_ids(input_ids)
        length = input_ids.shape[1]
        if attention_mask is None:
            attention_mask = input_ids.ne(self.config.pad_token_id)
        mask = attention_mask.to(self.item_embeddings.weight.dtype)
        hidden = self.item_embeddings(input_ids) * math.sqrt(self.config.hidden_size)
        if self.position_embeddings is not None:
            # Positions count back from the most recent item, so left padding does not shift them.
            positions = torch.arange(length - 1, -1, -1, device=input_ids.device)
            hidden = hidden + self.position_embeddings(positions)[None]
        hidden = self.dropout(hidden) * mask[..., None]
        conv_mask = mask[:, None, :]
        all_hidden = (hidden,) if output_hidden_states else None
        for layer in self.layers:
            hidden = layer(hidden, conv_mask)
            if output_hidden_states:
                all_hidden = all_hidden + (hidden,)
        hidden = self.final_norm(hidden)
        if not (return_dict if return_dict is not None else self.config.return_dict):
            return tuple(v for v in (hidden, all_hidden) if v is not None)
        return HyenaRecModelOutput(last_hidden_state=hidden, hidden_states=all_hidden)


class HyenaRecForNextItemPrediction(HyenaRecPreTrainedModel):
    """HyenaRec with the next-item head: `logits = LN(h) @ item_embeddings^T` (tied; no second matrix)."""

    _tied_weights_keys: dict[str, str] = {}

    def __init__(self, config: HyenaRecConfig):
        super().__init__(config)
        self.model = HyenaRecModel(config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        logits_to_keep: int = 0,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
    ) -> NextItemPredictionOutput | tuple:
        """Score the next item at every position (or the last `logits_to_keep` ones).

        Args:
            input_ids: `(batch, seq_len)` item indices, 0 = padding, left padded.
            attention_mask: `(batch, seq_len)`, 1 for real items.
            labels: `(batch, kept_positions)` next-item indices (-100 = ignore); with `logits_to_keep=1` a
                `(batch,)` tensor of targets is accepted too.
            logits_to_keep: 0 scores every position; k > 0 scores only the last k (evaluation and serving use 1).
        """
        outputs = self.model(input_ids, attention_mask, output_hidden_states=output_hidden_states, return_dict=True)
        hidden = outputs.last_hidden_state
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        return self.next_item_output(hidden, outputs.hidden_states, labels, num_items_in_batch, return_dict)


__all__ = [
    "HyenaRecModel",
    "HyenaRecForNextItemPrediction",
    "HyenaRecPreTrainedModel",
    "LegendreKernel",
    "ImplicitKernel",
    "legendre_basis",
    "causal_conv",
    "toeplitz_matrix",
]
