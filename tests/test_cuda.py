"""The models on a CUDA GPU give what they give on the CPU: every model family, every long-convolution path, bf16
autocast, the chunked loss, `recommend`, checkpoints moved between devices, and a real Trainer run.

Skipped where no CUDA device is present (CI); run on a GPU machine with `python -m pytest tests/test_cuda.py`.
"""

import sys
from pathlib import Path

import pytest
import torch
from tiny_data import tiny_model, train_and_validation  # tests/tiny_data.py
from transformers import AutoModel

from hyenarec_hf.training import TrainSettings, build_trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

MODEL_TYPES = ["hyenarec", "sasrec", "bert4rec", "gru4rec"]
NUM_ITEMS, LENGTH = 300, 64


def tiny(model_type: str, **overrides):
    return tiny_model(model_type, NUM_ITEMS, LENGTH, width=32, legendre_order=8, **overrides)


def batch(seed: int = 1, size: int = 6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-padded histories of different lengths, their labels (-100 on padding) and attention mask."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, NUM_ITEMS + 1, (size, LENGTH), generator=g)
    lengths = torch.randint(3, LENGTH + 1, (size,), generator=g)
    mask = torch.arange(LENGTH)[None, :] >= (LENGTH - lengths)[:, None]
    ids = ids * mask
    labels = torch.randint(1, NUM_ITEMS + 1, (size, LENGTH), generator=g).masked_fill(~mask, -100)
    return ids, labels, mask.long()


def loss_logits_grads(model, ids, labels, mask, device: str, bf16: bool = False):
    model = model.to(device).train()
    model.zero_grad()
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device))
    out.loss.backward()
    grads = {name: p.grad.detach().float().cpu() for name, p in model.named_parameters() if p.grad is not None}
    logits = None if out.logits is None else out.logits.detach().float().cpu()
    return out.loss.detach().float().cpu(), logits, grads


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_every_model_gives_the_cpu_loss_logits_and_gradients_on_cuda(model_type):
    ids, labels, mask = batch()
    cpu = loss_logits_grads(tiny(model_type), ids, labels, mask, "cpu")
    gpu = loss_logits_grads(tiny(model_type), ids, labels, mask, "cuda")
    torch.testing.assert_close(gpu[0], cpu[0], rtol=1e-4, atol=1e-5)
    if model_type != "bert4rec":  # BERT4Rec's training forward returns the masked positions only: same check
        torch.testing.assert_close(gpu[1], cpu[1], rtol=1e-3, atol=1e-4)
    assert gpu[2].keys() == cpu[2].keys() and len(cpu[2]) > 0
    for name in cpu[2]:
        torch.testing.assert_close(gpu[2][name], cpu[2][name], rtol=1e-3, atol=1e-5, msg=name)


@pytest.mark.parametrize("conv_impl", ["fft", "toeplitz", "auto"])
@pytest.mark.parametrize("filter_type", ["legendre", "implicit"])
def test_hyenarec_long_convolution_paths_agree_on_cuda(conv_impl, filter_type):
    """Every long-convolution implementation on the GPU matches the FFT path on the CPU, values and gradients."""
    ids, labels, mask = batch(seed=2)
    reference = loss_logits_grads(tiny("hyenarec", filter_type=filter_type, conv_impl="fft"), ids, labels, mask, "cpu")
    gpu = loss_logits_grads(tiny("hyenarec", filter_type=filter_type, conv_impl=conv_impl), ids, labels, mask, "cuda")
    torch.testing.assert_close(gpu[1], reference[1], rtol=1e-3, atol=1e-4)
    for name in reference[2]:
        torch.testing.assert_close(gpu[2][name], reference[2][name], rtol=1e-3, atol=1e-5, msg=name)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_bf16_autocast_on_cuda_stays_close_to_float32(model_type):
    ids, labels, mask = batch(seed=3)
    full = loss_logits_grads(tiny(model_type), ids, labels, mask, "cuda")
    half = loss_logits_grads(tiny(model_type), ids, labels, mask, "cuda", bf16=True)
    assert torch.isfinite(half[0])
    torch.testing.assert_close(half[0], full[0], rtol=2e-2, atol=0)
    assert all(torch.isfinite(g).all() for g in half[2].values())


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_item_scores_under_bf16_autocast_on_cuda_are_the_float32_product_of_the_scored_vector(model_type):
    """As on the CPU (`tests/test_score_precision.py`): autocast never makes the scoring GEMM bf16, so no bf16 ties."""
    model = tiny(model_type).cuda().eval()
    ids = batch(seed=5)[0].cuda()
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        scores = model.score_histories(ids, ids.ne(0))
        vectors = model.history_embeddings(ids, ids.ne(0))
    assert scores.dtype == torch.float32
    weight, bias = model.output_item_table()
    expected = vectors.float() @ weight.float().T + (0 if bias is None else bias.float())
    torch.testing.assert_close(scores[:, 1:], expected[:, 1:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model_type", ["hyenarec", "sasrec"])
def test_chunked_loss_on_cuda_equals_the_full_softmax(model_type):
    ids, labels, mask = batch(seed=4)
    full = loss_logits_grads(tiny(model_type), ids, labels, mask, "cuda")
    chunked = loss_logits_grads(tiny(model_type, loss_type="chunked_ce"), ids, labels, mask, "cuda")
    assert chunked[1] is None  # the chunked loss never builds the (tokens, items) logits
    torch.testing.assert_close(chunked[0], full[0], rtol=1e-5, atol=1e-6)
    for name in full[2]:
        torch.testing.assert_close(chunked[2][name], full[2][name], rtol=1e-4, atol=1e-6, msg=name)


def test_recommend_on_cuda_returns_the_cpu_top_k_and_a_cuda_checkpoint_loads_on_the_cpu(tmp_path):
    model = tiny("hyenarec", item_ids=[f"m{i}" for i in range(1, NUM_ITEMS + 1)]).eval()
    histories = [["m5", "m17", "m3"], [f"m{i}" for i in range(1, 120)], ["m250"]]
    on_cpu = model.recommend(histories, k=10, return_scores=True)
    model.to("cuda")
    on_gpu = model.recommend(histories, k=10, return_scores=True)
    for cpu_row, gpu_row in zip(on_cpu, on_gpu, strict=True):
        assert [item for item, _ in gpu_row] == [item for item, _ in cpu_row]
        assert [s for _, s in gpu_row] == pytest.approx([s for _, s in cpu_row], rel=1e-4, abs=1e-5)
    model.save_pretrained(tmp_path / "saved")
    loaded = AutoModel.from_pretrained(tmp_path / "saved")
    assert next(loaded.parameters()).device.type == "cpu"
    assert loaded.recommend(histories, k=10) == [[item for item, _ in row] for row in on_cpu]


def test_trainer_run_on_cuda_trains_on_the_gpu_and_learns(tmp_path):
    """A real Trainer run (dropout on, bf16): the model sits on the GPU, the loss falls and ranking beats chance."""
    g = torch.Generator().manual_seed(7)
    # Each history walks up the item ids: the next item is predictable, so a model that trains must rank it high.
    starts = torch.randint(1, NUM_ITEMS - LENGTH - 2, (256,), generator=g).tolist()
    histories = [list(range(s, s + LENGTH // 2 + 2)) for s in starts]
    settings = TrainSettings(
        max_length=LENGTH, epochs=8, batch_size=32, eval_batch_size=64, learning_rate=3e-3, logging_steps=4,
        num_sampled=0, seed=0, bf16=True, patience=8,
    )  # fmt: skip
    model = tiny("hyenarec", hidden_dropout_prob=0.1)
    trainer = build_trainer(model, train_and_validation(histories), tmp_path, settings)
    assert trainer.args.device.type == "cuda"
    trainer.train()
    assert next(trainer.model.parameters()).device.type == "cuda"
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert losses[-1] < 0.5 * losses[0]
    assert trainer.evaluate()["eval_ndcg@10_full"] > 0.5


def test_scaling_profile_on_cuda_counts_each_op_once():
    """The GPU profile lists ops (with the device time of the kernels they launched), never the kernels again."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import scaling  # benchmarks/scaling.py

    args = scaling.parse_args(["--device", "cuda", "--tokens", "4096", "--profile-top", "40"])
    result = scaling.profile_step("sasrec", 256, args, scaling.IdleGate(enabled=False))
    names = [op["op"] for op in result["top_ops"]]
    assert names and any(name.startswith("aten::") for name in names)
    kernels = [n for n in names if n.startswith(("void ", "Memcpy", "Memset")) or "kernel" in n.lower() or "_sm80" in n]
    assert kernels == []
    assert sum(op["share"] for op in result["top_ops"]) <= 1.0 + 1e-6
    assert sum(result["categories"].values()) == pytest.approx(1.0, abs=1e-3)
