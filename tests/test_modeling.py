"""Model correctness: Legendre basis, long convolution implementations, causality, padding, save/load, HF surface."""

import json
import math
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
from remote_code import BLOCK_PACKAGE  # tests/remote_code.py: the import blocker
from transformers import AutoConfig, AutoModel

import hyenarec_hf  # noqa: F401  (registers the Auto classes)
from hyenarec_hf import HyenaRecConfig, HyenaRecForNextItemPrediction, HyenaRecModel
from hyenarec_hf.modeling import modeling_hyenarec as mh
from hyenarec_hf.modeling.modeling_hyenarec import LegendreKernel, causal_conv, legendre_basis


def tiny_config(**overrides) -> HyenaRecConfig:
    values = dict(
        num_items=40,
        hidden_size=16,
        num_hidden_layers=2,
        intermediate_size=32,
        max_position_embeddings=24,
        legendre_order=6,
        hidden_dropout_prob=0.0,
    )
    values.update(overrides)
    return HyenaRecConfig(**values)


def tiny_model(dtype=torch.float32, **overrides) -> HyenaRecForNextItemPrediction:
    torch.manual_seed(0)
    return HyenaRecForNextItemPrediction(tiny_config(**overrides)).to(dtype).eval()


# ----------------------------------------------------------------------------------------------------------------------
# Legendre basis and kernels
# ----------------------------------------------------------------------------------------------------------------------


def test_legendre_basis_matches_closed_forms():
    basis = legendre_basis(4, 101)
    x = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)
    closed = [
        torch.ones_like(x),
        2 * x - 1,
        6 * x**2 - 6 * x + 1,
        20 * x**3 - 30 * x**2 + 12 * x - 1,
    ]
    for n, p in enumerate(closed):
        torch.testing.assert_close(basis[n], math.sqrt(2 * n + 1) * p, atol=1e-12, rtol=0)


def test_legendre_basis_matches_scipy_and_endpoint_values():
    special = pytest.importorskip("scipy.special")
    order, length = 32, 200
    basis = legendre_basis(order, length)
    x = torch.linspace(0.0, 1.0, length, dtype=torch.float64).numpy()
    for n in range(order):
        expected = math.sqrt(2 * n + 1) * special.eval_sh_legendre(n, x)
        torch.testing.assert_close(basis[n], torch.from_numpy(expected), atol=1e-11, rtol=0)
        assert basis[n, -1].item() == pytest.approx(math.sqrt(2 * n + 1))
        assert basis[n, 0].item() == pytest.approx((-1) ** n * math.sqrt(2 * n + 1))


def test_legendre_basis_is_orthonormal():
    # The orthonormal basis integrates to the identity on [0, 1] (trapezoid rule on a fine grid).
    order, length = 12, 4001
    basis = legendre_basis(order, length)
    weights = torch.full((length,), 1.0 / (length - 1), dtype=torch.float64)
    weights[0] = weights[-1] = 0.5 / (length - 1)
    gram = (basis * weights) @ basis.T
    torch.testing.assert_close(gram, torch.eye(order, dtype=torch.float64), atol=5e-3, rtol=0)
    # And the sampled Gram matrix on the default (N, l_max) is well conditioned.
    sampled = legendre_basis(16, 200)
    assert torch.linalg.cond(sampled @ sampled.T / 200).item() < 10


def test_too_high_legendre_order_warns():
    with pytest.warns(UserWarning, match="ill-conditioned"):
        HyenaRecConfig(max_position_embeddings=50, legendre_order=32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HyenaRecConfig(max_position_embeddings=200, legendre_order=16)


@pytest.mark.parametrize("filter_type", ["legendre", "implicit", "hybrid"])
def test_kernel_prefix_invariance(filter_type):
    model = tiny_model(torch.float64, filter_type=filter_type)
    kernel = model.model.layers[0].mixer.kernel
    with torch.no_grad():
        full, _ = kernel(24, "fft")
        short, _ = kernel(9, "fft")
    assert full.shape == (16, 24)
    # float32 buffers, so equal up to matmul rounding: the kernel at lag t never depends on the batch length
    torch.testing.assert_close(full[:, :9], short, atol=1e-6, rtol=1e-6)
    assert (full[:, :9] - short).abs().max() < 1e-6 * full.abs().max()


def test_legendre_kernel_decay_envelope_initialisation():
    config = tiny_config(max_position_embeddings=200, legendre_order=16, hidden_size=8)
    kernel = LegendreKernel(config, 8)
    kernel.reset_parameters()
    rates = torch.nn.functional.softplus(kernel.decay.detach().double())
    # channel 0 decays to 1% at 1.5 * l_max, the last channel at 0.3 * l_max
    assert rates[0].item() == pytest.approx(-math.log(0.01) / 1.5, rel=1e-5)
    assert rates[-1].item() == pytest.approx(-math.log(0.01) / 0.3, rel=1e-5)
    assert sum(p.numel() for p in kernel.parameters()) == 8 * 16 + 8


# ----------------------------------------------------------------------------------------------------------------------
# Long causal convolution
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 2, 3, 7, 50, 199, 200, 257])
def test_conv_implementations_agree_in_float64(length):
    torch.manual_seed(length)
    u = torch.randn(3, 5, length, dtype=torch.float64, requires_grad=True)
    k = torch.randn(5, length, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn(3, 5, length, dtype=torch.float64)
    results = {}
    for impl in ("direct", "fft", "toeplitz"):
        y = causal_conv(u, k, impl)
        gu, gk = torch.autograd.grad(y, (u, k), grad_out)
        results[impl] = (y.detach(), gu, gk)
    for impl in ("fft", "toeplitz"):
        for got, ref in zip(results[impl], results["direct"]):
            torch.testing.assert_close(got, ref, atol=1e-9, rtol=1e-9)


def test_conv_handles_non_contiguous_input():
    torch.manual_seed(0)
    u = torch.randn(4, 30, 6, dtype=torch.float64).transpose(1, 2)  # (4, 6, 30), not contiguous
    k = torch.randn(6, 30, dtype=torch.float64)
    ref = causal_conv(u.contiguous(), k, "direct")
    for impl in ("fft", "toeplitz"):
        torch.testing.assert_close(causal_conv(u, k, impl), ref, atol=1e-10, rtol=1e-10)


def test_conv_runs_in_float32_under_bf16_autocast():
    u = torch.randn(2, 4, 20).to(torch.bfloat16)
    k = torch.randn(4, 20)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for impl in ("fft", "toeplitz"):
            assert causal_conv(u, k, impl).dtype == torch.float32


def circular_fft_conv(u, kernel, impl="fft", toeplitz=None):
    """A WRONG long convolution (circular FFT with n = L, as FMLP-Rec does): it leaks the future."""
    n = u.shape[-1]
    return torch.fft.irfft(torch.fft.rfft(u.double(), n=n) * torch.fft.rfft(kernel.double(), n=n), n=n)


# ----------------------------------------------------------------------------------------------------------------------
# Whole-model causality and padding
# ----------------------------------------------------------------------------------------------------------------------


def future_leak(model, length=20, cut=11) -> float:
    """Largest change of any output at positions <= cut when every item after `cut` is replaced."""
    torch.manual_seed(1)
    items = torch.randint(1, model.config.num_items + 1, (2, length))
    changed = items.clone()
    changed[:, cut + 1 :] = torch.randint(1, model.config.num_items + 1, (2, length - cut - 1))
    with torch.no_grad():
        a = model(items).logits[:, : cut + 1]
        b = model(changed).logits[:, : cut + 1]
    return (a - b).abs().max().item()


@pytest.mark.parametrize("impl", ["fft", "toeplitz", "direct", "auto"])
@pytest.mark.parametrize("filter_type", ["legendre", "hybrid"])
def test_model_is_causal(impl, filter_type):
    model = tiny_model(torch.float64, conv_impl=impl, filter_type=filter_type)
    assert future_leak(model) < 1e-10


def test_causality_test_catches_a_circular_fft(monkeypatch):
    model = tiny_model(torch.float64, conv_impl="fft")
    monkeypatch.setattr(mh, "causal_conv", circular_fft_conv)
    # the correct convolution leaks ~1e-16 (round-off); the circular one leaks at the scale of the kernel tail
    assert future_leak(model) > 1e-6


@pytest.mark.parametrize("impl", ["fft", "toeplitz"])
def test_padding_does_not_change_last_position_scores(impl):
    model = tiny_model(torch.float64, conv_impl=impl, use_position_embeddings=False)
    history = torch.tensor([5, 9, 2, 33, 7, 7, 12])
    batches = []
    for pad in (0, 3, 17):
        ids = torch.cat([torch.zeros(pad, dtype=torch.long), history])[None]
        with torch.no_grad():
            batches.append(model(ids, attention_mask=ids.ne(0)).logits[0, -1])
    for other in batches[1:]:
        torch.testing.assert_close(other, batches[0], atol=1e-10, rtol=1e-10)


def test_padding_invariance_in_a_mixed_batch_with_position_embeddings():
    model = tiny_model(torch.float64, use_position_embeddings=True)
    short = torch.tensor([[3, 4, 5]])
    batch = torch.tensor([[0, 0, 0, 3, 4, 5], [1, 2, 3, 4, 5, 6]])
    with torch.no_grad():
        alone = model(short).logits[0, -1]
        together = model(batch, attention_mask=batch.ne(0)).logits[0, -1]
    torch.testing.assert_close(together, alone, atol=1e-10, rtol=1e-10)


def test_padding_item_is_never_recommended():
    model = tiny_model()
    # Make the padding row of the embedding as attractive as possible: it must still not score.
    with torch.no_grad():
        model.model.item_embeddings.weight[0] = 100.0
        scores = model.score_histories(torch.tensor([[0, 1, 2, 3]]))
    assert scores.argmax(-1).item() != 0
    assert scores[0, 0].item() == torch.finfo(scores.dtype).min


def test_no_seq_len_squared_activation_in_fft_path():
    # The FFT path allocates nothing of size L x L: a forward at L = 2000 with a big catalogue-free config fits in a
    # small memory budget, and the toeplitz builder is never called.
    model = tiny_model(max_position_embeddings=2000, legendre_order=16, conv_impl="fft", num_items=10)
    called = []
    original = mh.toeplitz_matrix
    mh.toeplitz_matrix = lambda k: called.append(k.shape) or original(k)
    try:
        with torch.no_grad():
            model(torch.randint(1, 11, (2, 2000)), logits_to_keep=1)
    finally:
        mh.toeplitz_matrix = original
    assert called == []


# ----------------------------------------------------------------------------------------------------------------------
# Loss, inputs, config
# ----------------------------------------------------------------------------------------------------------------------


def test_loss_is_cross_entropy_over_non_padding_positions():
    model = tiny_model()
    ids = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    labels = torch.tensor([[-100, -100, 4, 5, 6], [2, 3, 4, 5, 6]])
    out = model(ids, labels=labels)
    keep = labels != -100
    expected = torch.nn.functional.cross_entropy(out.logits[keep], labels[keep])
    torch.testing.assert_close(out.loss, expected)


def test_logits_to_keep_scores_only_the_last_position():
    model = tiny_model()
    ids = torch.randint(1, 41, (3, 10))
    with torch.no_grad():
        full = model(ids).logits
        last = model(ids, logits_to_keep=1, labels=torch.tensor([1, 2, 3]))
    assert last.logits.shape == (3, 1, 41)
    torch.testing.assert_close(last.logits[:, 0], full[:, -1])
    assert last.loss is not None


def test_sampled_softmax_loss_trains():
    model = tiny_model(loss_type="sampled_ce", num_negatives=8).train()
    ids = torch.randint(1, 41, (4, 10))
    out = model(ids, labels=torch.randint(1, 41, (4, 10)))
    out.loss.backward()
    assert torch.isfinite(out.loss) and model.model.item_embeddings.weight.grad.abs().sum() > 0


def test_out_of_range_item_ids_raise_a_clear_error():
    model = tiny_model()
    with pytest.raises(ValueError, match="item index 41 is outside the model's vocabulary"):
        model(torch.tensor([[1, 2, 41]]))
    with pytest.raises(ValueError, match="exceeds max_position_embeddings"):
        model(torch.ones(1, 25, dtype=torch.long))
    with pytest.raises(ValueError, match="label 0 is not an item index"):
        model(torch.tensor([[1, 2, 3]]), labels=torch.tensor([[2, 3, 0]]))


@pytest.mark.parametrize(
    "field, value",
    [
        ("num_items", 0),
        ("hidden_size", -4),
        ("num_hidden_layers", 1.5),
        ("max_position_embeddings", 1),
        ("legendre_order", 0),
        ("filter_type", "chebyshev"),
        ("conv_impl", "cuda"),
        ("branch_fusion", "concat"),
        ("long_conv_normalization", "softmax"),
        ("short_conv_kernel_size", 0),
        ("hidden_dropout_prob", 1.0),
        ("mixer_dropout_prob", -0.1),
        ("layer_norm_eps", 0),
        ("decay_target", 2.0),
        ("implicit_filter_emb_dim", 4),
        ("loss_type", "bpr"),
        ("pad_token_id", 3),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"HyenaRecConfig\.{field}="):
        HyenaRecConfig(**{field: value})


def test_config_rejects_disabling_both_branches_and_bad_vocabulary():
    with pytest.raises(ValueError, match="use_long_branch"):
        HyenaRecConfig(use_long_branch=False, use_short_branch=False)
    with pytest.raises(ValueError, match="item_ids"):
        HyenaRecConfig(num_items=3, item_ids=["a", "b"])


@pytest.mark.parametrize(
    "overrides",
    [
        dict(use_long_branch=False),
        dict(use_short_branch=False),
        dict(branch_fusion="gate"),
        dict(filter_type="implicit"),
        dict(long_conv_normalization="mass"),
    ],
)
def test_ablation_variants_run_and_learn(overrides):
    model = tiny_model(**overrides).train()
    ids = torch.randint(1, 41, (4, 12))
    out = model(ids, labels=torch.randint(1, 41, (4, 12)))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads)


@pytest.mark.parametrize("padding", ["left", "right"])
def test_kernel_mass_is_the_kernels_absolute_mass_over_the_lags_that_reach_real_items(padding):
    torch.manual_seed(0)
    kernel = torch.randn(6, 10, dtype=torch.float64)
    lengths = [10, 4, 1, 7]
    mask = torch.zeros(len(lengths), 1, 10, dtype=torch.float64)
    for b, n in enumerate(lengths):
        if padding == "left":
            mask[b, 0, 10 - n :] = 1.0
        else:
            mask[b, 0, :n] = 1.0
    # Reference: the causal convolution of the mask with |K|, i.e. sum over earlier real positions s of |K_{t-s}|.
    reference = causal_conv(mask.expand(-1, 6, -1), kernel.abs(), "direct")
    mass = mh.HyenaRecMixer.kernel_mass(kernel, mask)
    real = mask.expand(-1, 6, -1).bool()
    torch.testing.assert_close(mass[real], reference[real])


def test_mass_normalized_long_convolution_is_a_kernel_weighted_mean_whatever_the_history_length():
    # The paper's long convolution grows with the number of real items; the "mass" variant is bounded by the largest
    # input and, for a constant input and a positive kernel, returns that constant at every history length.
    torch.manual_seed(0)
    kernel = torch.rand(3, 12, dtype=torch.float64) + 0.1
    outputs = {}
    for n in (1, 3, 12):
        mask = torch.zeros(1, 1, 12, dtype=torch.float64)
        mask[..., 12 - n :] = 1.0
        z = 2.5 * mask.expand(-1, 3, -1)
        plain = causal_conv(z, kernel, "direct")
        outputs[n] = (plain[..., -1], (plain / mh.HyenaRecMixer.kernel_mass(kernel, mask))[..., -1])
    torch.testing.assert_close(outputs[1][1], torch.full((1, 3), 2.5, dtype=torch.float64))
    torch.testing.assert_close(outputs[12][1], torch.full((1, 3), 2.5, dtype=torch.float64))
    assert (outputs[12][0] > 3 * outputs[1][0]).all()  # unnormalised: the full history sums many more terms
    signed = torch.randn(3, 12, dtype=torch.float64)
    z = torch.randn(2, 3, 12, dtype=torch.float64)
    mask = torch.ones(2, 1, 12, dtype=torch.float64)
    normalised = causal_conv(z, signed, "direct") / mh.HyenaRecMixer.kernel_mass(signed, mask)
    assert normalised.abs().max() <= z.abs().max() + 1e-12


def test_mass_normalization_keeps_padding_invariance_and_agrees_across_conv_impls():
    model = tiny_model(long_conv_normalization="mass", hidden_dropout_prob=0.0)
    history = torch.tensor([[5, 9, 2, 7]])
    with torch.no_grad():
        short = model(history).logits[0, -1]
        padded = model(torch.cat([torch.zeros(1, 8, dtype=torch.long), history], dim=1)).logits[0, -1]
        torch.testing.assert_close(padded, short, atol=1e-5, rtol=1e-5)
        ids = torch.randint(1, 41, (3, 16))
        ids[0, :9] = 0
        logits = {}
        for impl in ("direct", "toeplitz", "fft"):
            model.config.conv_impl = impl
            logits[impl] = model(ids).logits
    torch.testing.assert_close(logits["toeplitz"], logits["direct"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits["fft"], logits["direct"], atol=1e-4, rtol=1e-4)
    model.config.long_conv_normalization = "none"  # the same weights without the normalization
    with torch.no_grad():
        assert (model(ids).logits - logits["direct"]).abs().max() > 1e-4


# ----------------------------------------------------------------------------------------------------------------------
# Eval-mode kernel cache
# ----------------------------------------------------------------------------------------------------------------------


def test_eval_kernel_cache_is_invalidated_when_weights_change():
    model = tiny_model(conv_impl="toeplitz")
    ids = torch.randint(1, 41, (2, 12))
    with torch.no_grad():
        before = model(ids).logits
        assert model.model.layers[0].mixer.kernel._cache is not None
        model.model.layers[0].mixer.kernel.legendre.coefficients.mul_(3.0)
        after = model(ids).logits
    assert (after - before).abs().max() > 1e-4
    fresh = tiny_model(conv_impl="toeplitz")
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh(ids).logits, after)


# ----------------------------------------------------------------------------------------------------------------------
# Hugging Face surface: save/load, Auto classes, remote code, autocast, gradient checkpointing
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("filter_type", ["legendre", "implicit", "hybrid"])
def test_save_load_round_trip_gives_identical_logits(tmp_path, filter_type):
    model = tiny_model(filter_type=filter_type, item_ids=[f"m{i}" for i in range(40)])
    model.save_pretrained(tmp_path)
    files = set(os.listdir(tmp_path))
    assert {"model.safetensors", "config.json", "modeling_hyenarec.py", "configuration_hyenarec.py"} <= files
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    loaded = HyenaRecForNextItemPrediction.from_pretrained(tmp_path).eval()
    ids = torch.randint(1, 41, (3, 15))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, atol=0, rtol=0)
    for name, buffer in model.named_buffers():
        torch.testing.assert_close(dict(loaded.named_buffers())[name], buffer, atol=0, rtol=0)
    assert loaded.config.item_ids == [f"m{i}" for i in range(40)]


def test_auto_classes_load_a_saved_folder(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "hyenarec"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_hyenarec.HyenaRecConfig",
        "AutoModel": "modeling_hyenarec.HyenaRecForNextItemPrediction",
    }
    assert isinstance(AutoConfig.from_pretrained(tmp_path), HyenaRecConfig)
    auto = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(auto, HyenaRecForNextItemPrediction)
    ids = torch.randint(1, 41, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(auto(ids).logits, model(ids).logits, atol=0, rtol=0)
    assert isinstance(AutoModel.from_config(tiny_config()), HyenaRecForNextItemPrediction)
    assert isinstance(HyenaRecModel(tiny_config()), HyenaRecModel)


def test_remote_code_load_without_the_package(tmp_path):
    model = tiny_model(item_ids=[str(i) for i in range(1, 41)])
    folder = tmp_path / "checkpoint"
    model.save_pretrained(folder)
    ids = torch.randint(1, 41, (2, 10))
    torch.save({"ids": ids}, tmp_path / "ids.pt")
    with torch.no_grad():
        expected = model(ids).logits
    torch.save({"logits": expected}, tmp_path / "expected.pt")
    script = BLOCK_PACKAGE + textwrap.dedent(
        f"""
        import torch
        from transformers import AutoModel
        try:
            import hyenarec_hf
            raise SystemExit("hyenarec_hf should not be importable here")
        except ImportError:
            pass
        model = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        ids = torch.load({str(tmp_path / "ids.pt")!r})["ids"]
        expected = torch.load({str(tmp_path / "expected.pt")!r})["logits"]
        with torch.no_grad():
            got = model(ids).logits
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        assert torch.equal(got, expected), (got - expected).abs().max()
        assert model.config.item_ids[0] == "1"
        print("REMOTE_OK")
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert "REMOTE_OK" in result.stdout, result.stdout + result.stderr


def test_bf16_autocast_forward_backward_keeps_long_conv_in_float32():
    model = tiny_model().train()
    seen = []
    original = mh.causal_conv

    def spy(u, kernel, impl="fft", toeplitz=None):
        out = original(u, kernel, impl, toeplitz)
        seen.append((u.dtype, out.dtype))
        return out

    mh.causal_conv = spy
    try:
        ids = torch.randint(1, 41, (4, 16))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(ids, labels=torch.randint(1, 41, (4, 16)))
        out.loss.backward()
    finally:
        mh.causal_conv = original
    assert torch.isfinite(out.loss)
    assert seen and all(out_dtype == torch.float32 for _, out_dtype in seen)
    assert any(in_dtype == torch.bfloat16 for in_dtype, _ in seen)  # autocast was really active around it


def test_gradient_checkpointing_gives_the_same_gradients():
    ids = torch.randint(1, 41, (3, 14))
    labels = torch.randint(1, 41, (3, 14))
    grads = []
    for checkpointing in (False, True):
        model = tiny_model(torch.float64).train()
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            assert model.model.layers[0].gradient_checkpointing
        model(ids, labels=labels).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-12, rtol=1e-10, msg=name)


def test_mixer_dropout_acts_only_in_training_keeps_causality_and_is_off_by_default():
    assert HyenaRecConfig().mixer_dropout_prob == 0.0
    plain = tiny_model()
    dropped = tiny_model(mixer_dropout_prob=0.5)
    dropped.load_state_dict(plain.state_dict())  # the switch adds no parameter: the same weights load as they are
    ids = torch.randint(1, 41, (3, 16))  # drawn after tiny_model's manual_seed(0): the same histories every run
    ids[0, :5] = 0
    with torch.no_grad():
        reference = plain(ids).logits
        torch.testing.assert_close(dropped(ids).logits, reference)  # eval: no dropout
        torch.manual_seed(1)
        assert torch.equal(plain.train()(ids).logits, reference)  # p = 0 in training: the same model
        torch.manual_seed(1)
        noisy = dropped.train()(ids).logits
        assert (noisy - reference).abs().max() > 1e-5  # small at init (small mixer weights), 0 without the dropout
        # The mask depends only on the shape, so under one seed a changed last item changes no earlier position.
        changed = ids.clone()
        changed[:, -1] = torch.where(changed[:, -1] == 7, 8, 7)
        torch.manual_seed(1)
        again = dropped(changed).logits
    torch.testing.assert_close(again[:, :-1], noisy[:, :-1])
    assert (again[:, -1] - noisy[:, -1]).abs().max() > 1e-4
