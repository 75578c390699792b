"""HyenaRec configuration.

This file ships next to the weights on the Hub (``trust_remote_code=True``): it imports only ``transformers``.
"""

from __future__ import annotations

import math
import warnings

from transformers import PretrainedConfig

FILTER_TYPES = ("legendre", "implicit", "hybrid")
CONV_IMPLS = ("auto", "fft", "toeplitz", "direct")
BRANCH_FUSIONS = ("sum", "gate")
LONG_CONV_NORMALIZATIONS = ("none", "mass")
LOSS_TYPES = ("ce", "sampled_ce", "chunked_ce")


def _check(condition: bool, field: str, value, allowed: str) -> None:
    if not condition:
        raise ValueError(f"HyenaRecConfig.{field}={value!r} is not allowed: {field} must be {allowed}.")


class HyenaRecConfig(PretrainedConfig):
    r"""Configuration of a HyenaRec next-item recommender.

    HyenaRec ("Hyena Operator for Fast Sequential Recommendation", Liu et al., WWW '26, arXiv 2603.25027) mixes a
    user's item history with long causal convolutions whose kernels are Legendre-polynomial expansions (an order-2
    Hyena recurrence), plus a gated short convolution for short bursts of activity.

    Args:
        num_items (`int`, defaults to 3416):
            Number of real items. Item indices run from 1 to `num_items`; index 0 is padding. The output layer scores
            `num_items + 1` classes, and the padding class never scores.
        hidden_size (`int`, defaults to 64):
            Width of item embeddings and of every block.
        num_hidden_layers (`int`, defaults to 2):
            Number of HyenaRec blocks.
        intermediate_size (`int`, defaults to 256):
            Width of the position-wise feed-forward network in each block.
        max_position_embeddings (`int`, defaults to 200):
            Longest history the model reads (`l_max`). Longer histories keep their most recent items. The long
            convolution kernels live on a fixed grid of this many lags, so the kernel at lag t never depends on the
            length of the batch.
        legendre_order (`int`, defaults to 16):
            Number N of Legendre polynomials per channel kernel. Above ~2*sqrt(max_position_embeddings) the sampled
            basis is ill-conditioned (a warning is given).
        filter_type (`str`, defaults to `"legendre"`):
            Long-convolution kernel family: `"legendre"` (Legendre expansion times a learned exponential decay),
            `"implicit"` (Hyena's sine-MLP over complex-exponential position features, times a fixed decay) or
            `"hybrid"` (the sum of both).
        implicit_filter_order (`int`, defaults to 16):
            Width of the implicit (Hyena) filter MLP; used when `filter_type` is `"implicit"` or `"hybrid"`.
        implicit_filter_emb_dim (`int`, defaults to 5):
            Number of position features (odd, >= 3) fed to the implicit filter MLP.
        decay_fast_pct (`float`, defaults to 0.3) / decay_slow_pct (`float`, defaults to 1.5) / decay_target
        (`float`, defaults to 0.01):
            Kernel decay initialisation: channel d decays to `decay_target` at a lag between `decay_fast_pct` and
            `decay_slow_pct` times `max_position_embeddings` (Hyena's defaults).
        short_conv_kernel_size (`int`, defaults to 3):
            Width of the causal depthwise convolutions: Hyena's short filter on the q/g/v projections and the gated
            short convolution (GLU) branch.
        use_long_branch (`bool`, defaults to `True`) / use_short_branch (`bool`, defaults to `True`):
            Ablation switches for the two branches of the token mixer (at least one must stay on).
        branch_fusion (`str`, defaults to `"sum"`):
            How the long and short branches are combined: `"sum"` or `"gate"` (a learned per-channel sigmoid mix).
        use_position_embeddings (`bool`, defaults to `False`):
            Add a learned absolute position embedding (ablation; position normally enters through the kernels).
        long_conv_normalization (`str`, defaults to `"none"`):
            `"none"`: the paper's long convolution, a kernel-weighted sum over the history, so its scale grows with
            the number of real items. `"mass"` (not in the paper; an opt-in variant): each position's output is
            divided by the kernel's absolute mass over the lags that reach real items, `sum_{l < n_t} |K_l|` with
            `n_t` the real items up to position t, which makes it a kernel-weighted mean (bounded by the largest
            input, like attention's convex combination) whose scale does not depend on the history length.
        conv_impl (`str`, defaults to `"auto"`):
            Long causal convolution: `"fft"` (zero-padded rFFT, O(L log L)), `"toeplitz"` (lower-triangular Toeplitz
            matrix times input as a batched GEMM), `"direct"` (plain O(L^2) reference) or `"auto"` (`toeplitz` up to
            `conv_auto_threshold`, `fft` above it). All compute in float32 with autocast off.
        conv_auto_threshold (`int`, defaults to 100):
            Longest sequence for which `"auto"` picks the Toeplitz GEMM on CPU (the FFT/Toeplitz crossover measured by
            `benchmarks/conv_impl_threshold.py`; on GPUs `"auto"` always uses the FFT).
        hidden_dropout_prob (`float`, defaults to 0.2):
            Dropout on embeddings and on each residual branch.
        mixer_dropout_prob (`float`, defaults to 0.0):
            Dropout inside the mixer, on the gated product `g * v` before the long convolution (where Hyena's
            reference operator puts its `dropout`): it drops single (channel, position) inputs of the convolution,
            as SASRec's `attention_probs_dropout_prob` drops single attention weights. 0 (the default) is the
            architecture every published result used.
        initializer_range (`float`, defaults to 0.02):
            Standard deviation of the normal initialiser of linear layers and item embeddings.
        mixer_init_std (`float`, *optional*):
            Standard deviation of the mixer's input projection (q, g, v, a, b); `None` uses `initializer_range`.
        layer_norm_eps (`float`, defaults to 1e-5):
            Epsilon of the layer norms.
        loss_type (`str`, defaults to `"ce"`):
            `"ce"`: full-softmax cross-entropy over all items at every non-padding position; `"sampled_ce"`:
            cross-entropy over the target and `num_negatives` uniformly sampled items (for large catalogues); `"chunked_ce"`: the same
            full softmax in training, scored in chunks of positions so the `(positions, items)` logits are never
            built (less memory, same loss; the forward returns no logits in training).
        num_negatives (`int`, defaults to 256):
            Negatives per batch for `loss_type="sampled_ce"`.
        item_ids (`list[str]`, *optional*):
            The item vocabulary: `item_ids[i]` is the raw id of item index `i + 1`. Saved in `config.json`, so a
            loaded model answers in the user's own ids.
        pad_token_id (`int`, defaults to 0):
            The padding item index. Must be 0.
    """

    model_type = "hyenarec"

    def __init__(
        self,
        num_items: int = 3416,
        hidden_size: int = 64,
        num_hidden_layers: int = 2,
        intermediate_size: int = 256,
        max_position_embeddings: int = 200,
        legendre_order: int = 16,
        filter_type: str = "legendre",
        implicit_filter_order: int = 16,
        implicit_filter_emb_dim: int = 5,
        decay_fast_pct: float = 0.3,
        decay_slow_pct: float = 1.5,
        decay_target: float = 0.01,
        short_conv_kernel_size: int = 3,
        use_long_branch: bool = True,
        use_short_branch: bool = True,
        branch_fusion: str = "sum",
        use_position_embeddings: bool = False,
        long_conv_normalization: str = "none",
        conv_impl: str = "auto",
        conv_auto_threshold: int = 100,
        hidden_dropout_prob: float = 0.2,
        mixer_dropout_prob: float = 0.0,
        initializer_range: float = 0.02,
        mixer_init_std: float | None = None,
        layer_norm_eps: float = 1e-5,
        loss_type: str = "ce",
        num_negatives: int = 256,
        item_ids: list[str] | None = None,
        pad_token_id: int = 0,
        tie_word_embeddings: bool = True,
        **kwargs,
    ):
        self.num_items = num_items
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.intermediate_size = intermediate_size
        self.max_position_embeddings = max_position_embeddings
        self.legendre_order = legendre_order
        self.filter_type = filter_type
        self.implicit_filter_order = implicit_filter_order
        self.implicit_filter_emb_dim = implicit_filter_emb_dim
        self.decay_fast_pct = decay_fast_pct
        self.decay_slow_pct = decay_slow_pct
        self.decay_target = decay_target
        self.short_conv_kernel_size = short_conv_kernel_size
        self.use_long_branch = use_long_branch
        self.use_short_branch = use_short_branch
        self.branch_fusion = branch_fusion
        self.use_position_embeddings = use_position_embeddings
        self.long_conv_normalization = long_conv_normalization
        self.conv_impl = conv_impl
        self.conv_auto_threshold = conv_auto_threshold
        self.hidden_dropout_prob = hidden_dropout_prob
        self.mixer_dropout_prob = mixer_dropout_prob
        self.initializer_range = initializer_range
        self.mixer_init_std = mixer_init_std
        self.layer_norm_eps = layer_norm_eps
        self.loss_type = loss_type
        self.num_negatives = num_negatives
        self.item_ids = list(item_ids) if item_ids is not None else None
        super().__init__(pad_token_id=pad_token_id, tie_word_embeddings=tie_word_embeddings, **kwargs)
        self.validate_hyenarec()

    def validate_hyenarec(self) -> None:
        """Check every HyenaRec field; raise `ValueError` naming the field, the value and what is allowed."""
        for field in ("num_items", "hidden_size", "num_hidden_layers", "intermediate_size", "legendre_order"):
            value = getattr(self, field)
            _check(isinstance(value, int) and not isinstance(value, bool) and value >= 1, field, value, "an int >= 1")
        lmax = self.max_position_embeddings
        _check(isinstance(lmax, int) and lmax >= 2, "max_position_embeddings", lmax, "an int >= 2")
        _check(self.filter_type in FILTER_TYPES, "filter_type", self.filter_type, f"one of {FILTER_TYPES}")
        _check(self.conv_impl in CONV_IMPLS, "conv_impl", self.conv_impl, f"one of {CONV_IMPLS}")
        _check(self.branch_fusion in BRANCH_FUSIONS, "branch_fusion", self.branch_fusion, f"one of {BRANCH_FUSIONS}")
        _check(
            self.long_conv_normalization in LONG_CONV_NORMALIZATIONS,
            "long_conv_normalization",
            self.long_conv_normalization,
            f"one of {LONG_CONV_NORMALIZATIONS}",
        )
        _check(self.loss_type in LOSS_TYPES, "loss_type", self.loss_type, f"one of {LOSS_TYPES}")
        _check(
            isinstance(self.implicit_filter_order, int) and self.implicit_filter_order >= 1,
            "implicit_filter_order",
            self.implicit_filter_order,
            "an int >= 1",
        )
        emb = self.implicit_filter_emb_dim
        _check(isinstance(emb, int) and emb >= 3 and emb % 2 == 1, "implicit_filter_emb_dim", emb, "an odd int >= 3")
        k = self.short_conv_kernel_size
        _check(isinstance(k, int) and 1 <= k <= 16, "short_conv_kernel_size", k, "an int between 1 and 16")
        _check(
            isinstance(self.conv_auto_threshold, int) and self.conv_auto_threshold >= 0,
            "conv_auto_threshold",
            self.conv_auto_threshold,
            "an int >= 0",
        )
        _check(
            isinstance(self.num_negatives, int) and self.num_negatives >= 1,
            "num_negatives",
            self.num_negatives,
            "an int >= 1",
        )
        for field in ("hidden_dropout_prob", "mixer_dropout_prob"):
            value = getattr(self, field)
            _check(isinstance(value, (int, float)) and 0.0 <= value < 1.0, field, value, "a float in [0, 1)")
        for field in ("initializer_range", "layer_norm_eps", "decay_fast_pct", "decay_slow_pct"):
            value = getattr(self, field)
            _check(isinstance(value, (int, float)) and value > 0, field, value, "a float > 0")
        _check(
            self.decay_fast_pct <= self.decay_slow_pct,
            "decay_fast_pct",
            self.decay_fast_pct,
            f"<= decay_slow_pct ({self.decay_slow_pct})",
        )
        _check(
            self.mixer_init_std is None or (isinstance(self.mixer_init_std, (int, float)) and self.mixer_init_std > 0),
            "mixer_init_std",
            self.mixer_init_std,
            "None or a float > 0",
        )
        _check(0.0 < self.decay_target < 1.0, "decay_target", self.decay_target, "a float in (0, 1)")
        _check(
            self.use_long_branch or self.use_short_branch,
            "use_long_branch",
            self.use_long_branch,
            "True when use_short_branch is False (the token mixer needs at least one branch)",
        )
        _check(self.pad_token_id == 0, "pad_token_id", self.pad_token_id, "0 (item index 0 is padding)")
        if self.item_ids is not None:
            _check(
                len(self.item_ids) == self.num_items,
                "item_ids",
                f"<{len(self.item_ids)} ids>",
                f"a list of exactly num_items ({self.num_items}) raw ids",
            )
            _check(
                len(set(self.item_ids)) == len(self.item_ids),
                "item_ids",
                "<list with duplicates>",
                "a list of distinct raw ids",
            )
        limit = 2 * math.sqrt(lmax)
        if self.filter_type != "implicit" and self.legendre_order > limit:
            warnings.warn(
                f"HyenaRecConfig.legendre_order={self.legendre_order} exceeds ~2*sqrt(max_position_embeddings)="
                f"{limit:.0f}: the sampled Legendre basis is ill-conditioned on {lmax} points, which slows training. "
                f"Use legendre_order <= {int(limit)}.",
                stacklevel=2,
            )
