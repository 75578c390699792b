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
from .next_item import NextItemMixin, NextItemPredictionOutput, mask_padding_item, next_item_cross_entropy

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
    lag = torch.arange(length, device=kernel.device)
    lag = lag[:, None] - lag[None, :]
    padded = torch.cat([kernel, kernel.new_zeros(channels, 1)], dim=1)
    index = torch.where(lag >= 0, lag, length)
    return padded[:, index]


def causal_conv(u: torch.Tensor, kernel: torch.Tensor, impl: str = "fft", toeplitz: torch.Tensor | None = None):
    """Causal long convolution along the last dimension: `y[..., d, t] = sum_{s<=t} kernel[d, t-s] * u[..., d, s]`.

    Args:
        u: `(batch, channels, seq_len)` input.
        kernel: `(channels, seq_len)` kernel (lag 0 first).
        impl: `"fft"` (zero-padded to n >= 2L, never circular), `"toeplitz"` (batched GEMM) or `"direct"` (O(L^2)
            reference loop, for tests).
        toeplitz: optional precomputed `toeplitz_matrix(kernel)` (eval-mode cache).

    Returns `(batch, channels, seq_len)` in float32 (or float64 when the inputs are float64); autocast is off inside.
    """
    length = u.shape[-1]
    dtype = torch.float64 if u.dtype == torch.float64 or kernel.dtype == torch.float64 else torch.float32
    with torch.autocast(device_type=u.device.type, enabled=False):
        u = u.to(dtype)
        kernel = kernel.to(dtype)
        if impl == "fft":
            n = _next_fast_fft_len(2 * length)
            spectrum = torch.fft.rfft(u, n=n) * torch.fft.rfft(kernel, n=n)
            return torch.fft.irfft(spectrum, n=n)[..., :length]
        if impl == "toeplitz":
            matrix = toeplitz_matrix(kernel) if toeplitz is None else toeplitz.to(dtype)
            # (channels, batch, L) @ (channels, L, L)^T: one GEMM per channel over the whole batch.
            y = torch.bmm(u.transpose(0, 1), matrix.transpose(1, 2))
            return y.transpose(0, 1)
        if impl == "direct":
            y = u * kernel[:, :1]
            for lag in range(1, length):
                y = y + F.pad(u[..., : length - lag], (lag, 0)) * kernel[:, lag : lag + 1]
            return y
    raise ValueError(f"Unknown long-convolution implementation {impl!r}; use 'fft', 'toeplitz' or 'direct'.")


def causal_depthwise_conv(u: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Causal depthwise convolution of width k: `(batch, channels, seq_len)` -> same shape; weight `(channels, 1, k)`."""
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
        conv_channels = self.num_conv_streams * d
        self.short_conv_weight = nn.Parameter(torch.empty(conv_channels, 1, config.short_conv_kernel_size))
        self.short_conv_bias = nn.Parameter(torch.empty(conv_channels))
        self.kernel = LongConvKernel(config, d) if self.use_long else None
        self.fusion_gate = (
            nn.Parameter(torch.empty(d)) if config.branch_fusion == "gate" and self.num_streams == 5 else None
        )
        self.out_proj = nn.Linear(d, d)

    def conv_impl(self, length: int, device: torch.device) -> str:
        impl = self.config.conv_impl
        if impl != "auto":
            return impl
        return "toeplitz" if length <= self.config.conv_auto_threshold else "fft"

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`hidden_states` `(batch, seq_len, hidden)`, `mask` `(batch, 1, seq_len)` float -> `(batch, seq_len, hidden)`."""
        d = self.hidden_size
        length = hidden_states.shape[1]
        # One layout switch to (batch, channels, seq_len) for the convolutions, one back before out_proj.
        streams = self.in_proj(hidden_states).transpose(1, 2)
        mask = mask.to(streams.dtype)
        streams = streams * mask
        conv_in, gate_b = streams[:, : self.num_conv_streams * d], streams[:, self.num_conv_streams * d :]
        conv_out = causal_depthwise_conv(conv_in, self.short_conv_weight, self.short_conv_bias) * mask
        y = None
        if self.use_long:
            q, g, v = conv_out[:, :d], conv_out[:, d : 2 * d], conv_out[:, 2 * d : 3 * d]
            z = g * v
            impl = self.conv_impl(length, hidden_states.device)
            kernel, toeplitz = self.kernel(length, impl)
            z = causal_conv(z, kernel, impl, toeplitz).to(z.dtype) + self.kernel.skip[:, None].to(z.dtype) * z
            y = q * z
        if self.use_short:
            y_short = conv_out[:, -d:] * torch.sigmoid(gate_b)
            if y is None:
                y = y_short
            elif self.fusion_gate is not None:
                mix = torch.sigmoid(self.fusion_gate)[:, None].to(y.dtype)
                y = mix * y + (1.0 - mix) * y_short
            else:
                y = y + y_short
        return self.out_proj(y.transpose(1, 2))


class HyenaRecFeedForward(nn.Module):
    def __init__(self, config: HyenaRecConfig):
        super().__init__()
        self.up = nn.Linear(config.hidden_size, config.intermediate_size)
        self.down = nn.Linear(config.intermediate_size, config.hidden_size)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

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
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

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
            init.normal_(module.weight, mean=0.0, std=std)
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
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
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

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.item_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.item_embeddings = value

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
        loss = None
        if labels is not None:
            if labels.dim() == 1:
                labels = labels[:, None]
            if labels.shape != hidden.shape[:2]:
                raise ValueError(
                    f"labels have shape {tuple(labels.shape)} but the model scores {tuple(hidden.shape[:2])} "
                    "positions; give one next item per scored position (-100 to ignore)."
                )
            self._validate_labels(labels)
        if labels is not None and self.config.loss_type == "sampled_ce" and self.training:
            loss = self._sampled_loss(hidden, labels, num_items_in_batch)
            logits = None
        else:
            logits = self.score(hidden)
            if labels is not None:
                loss = next_item_cross_entropy(logits, labels, num_items_in_batch)
        if not (return_dict if return_dict is not None else self.config.return_dict):
            return tuple(v for v in (loss, logits, outputs.hidden_states) if v is not None)
        return NextItemPredictionOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)

    def score(self, hidden: torch.Tensor) -> torch.Tensor:
        """Item scores `(..., num_items + 1)` from hidden states `(..., hidden)`; the padding item never scores."""
        return mask_padding_item(hidden @ self.model.item_embeddings.weight.transpose(0, 1).to(hidden.dtype))

    def _sampled_loss(self, hidden, labels, num_items_in_batch):
        """Cross-entropy over the target and `num_negatives` uniform negatives shared by the batch; a negative equal
        to the target is masked out (no accidental hits)."""
        keep = labels != -100
        hidden, targets = hidden[keep], labels[keep]
        weight = self.model.item_embeddings.weight
        negatives = torch.randint(1, self.config.num_items + 1, (self.config.num_negatives,), device=hidden.device)
        pos = (hidden * weight[targets].to(hidden.dtype)).sum(-1, keepdim=True)
        neg = hidden @ weight[negatives].to(hidden.dtype).transpose(0, 1)
        neg = neg.masked_fill(negatives[None, :] == targets[:, None], torch.finfo(neg.dtype).min)
        logits = torch.cat([pos, neg], dim=-1).float()
        zeros = torch.zeros(len(targets), dtype=torch.long, device=hidden.device)
        if num_items_in_batch is None:
            return F.cross_entropy(logits, zeros)
        return F.cross_entropy(logits, zeros, reduction="sum") / num_items_in_batch

    @torch.no_grad()
    def score_histories(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Scores `(batch, num_items + 1)` of the item following each (left-padded) history."""
        return self(input_ids, attention_mask, logits_to_keep=1).logits[:, -1]


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
