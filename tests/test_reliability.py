"""Bad input fails early with a message that names the problem and the fix: malformed or empty files, short users,
non-integer and out-of-range ids, empty and over-long histories, a diverging loss, out-of-range settings, broken model
folders and a vocabulary that does not match the weights."""

from __future__ import annotations

import json
import logging
import math
import shutil
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback

from hyenarec_hf import HyenaRecConfig, HyenaRecForNextItemPrediction, training
from hyenarec_hf.checkpoint import CheckpointError, check_safetensors, load_model
from hyenarec_hf.cli import main
from hyenarec_hf.collator import NextItemCollator
from hyenarec_hf.data import Interactions, ItemVocab, build_splits, load_interactions, read_pairs, read_seq
from hyenarec_hf.training import NonFiniteLossError, NonFiniteLossGuard, TrainSettings, build_trainer

NUM_ITEMS = 12
RAW_IDS = [str(100 + i) for i in range(1, NUM_ITEMS + 1)]  # raw ids differ from indices, so mix-ups show


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny_model(item_ids: list[str] | None = RAW_IDS, **overrides) -> HyenaRecForNextItemPrediction:
    values = dict(
        num_items=NUM_ITEMS,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        legendre_order=4,
        max_position_embeddings=8,
        hidden_dropout_prob=0.0,
        item_ids=item_ids,
    )
    values.update(overrides)
    torch.manual_seed(0)
    return HyenaRecForNextItemPrediction(HyenaRecConfig(**values)).eval()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reader, text, message",
    [
        (
            read_pairs,
            "1 5\n1 6 7\n",
            r"pairs.txt line 2: expected 'user item' \(two integer ids\), got '1 6 7' \(3 tokens\)",
        ),
        (read_pairs, "1 5\n2\n", r"line 2: expected 'user item' \(two integer ids\), got '2' \(1 tokens\)"),
        (read_seq, "1 5 6\n7\n", r"line 2: expected 'user item_1 item_2 ...' .*got '7' \(a user without items\)"),
    ],
)
def test_malformed_line_names_file_line_and_content(tmp_path, reader, text, message):
    path = write(tmp_path, "pairs.txt", text)
    with pytest.raises(ValueError, match=message + r"; fix the line or pass skip_malformed=True"):
        reader(path)
    # skipping is explicit and counted, never silent
    interactions = reader(path, skip_malformed=True)
    assert interactions.report["malformed_lines_skipped"] == 1
    assert interactions.report["first_malformed_lines"] == [2]


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
@pytest.mark.parametrize("reader", [read_pairs, read_seq, load_interactions])
def test_empty_file_is_an_error(tmp_path, reader, text):
    path = write(tmp_path, "empty.txt", text)
    with pytest.raises(ValueError, match=r"empty.txt has no interactions \(empty file or header only\)"):
        reader(path)


def test_file_of_only_malformed_lines_says_so(tmp_path):
    path = write(tmp_path, "bad.txt", "a b c\nd e f\n")
    with pytest.raises(ValueError, match=r"no valid interactions in .*bad.txt: all 2 lines were malformed"):
        read_pairs(path, skip_malformed=True)


@pytest.mark.parametrize(
    "reader, text, expected",
    [
        (read_pairs, "1 5\n1 x7\n", "'user item' (two integer ids), got '1 x7' (ids must be integers)"),
        (read_pairs, "1 5\n1 5.0\n", "got '1 5.0' (ids must be integers)"),
        (read_seq, "u1 5 6\n", "got 'u1 5 6' (ids must be integers)"),
    ],
)
def test_non_integer_ids_in_integer_formats(tmp_path, reader, text, expected):
    with pytest.raises(ValueError) as err:
        reader(write(tmp_path, "ids.txt", text))
    assert expected in str(err.value)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope.txt does not exist or is not a file; check the path"):
        load_interactions(tmp_path / "nope.txt")


# ---------------------------------------------------------------------------------------------------------------
# Splits and vocabulary
# ---------------------------------------------------------------------------------------------------------------


def test_users_too_short_for_the_split_are_counted_and_placed(caplog):
    interactions = Interactions(
        users=["one", "two", "three", "four"],
        sequences=[["a"], ["a", "b"], ["a", "b", "c"], ["a", "b", "c", "d"]],
    )
    with caplog.at_level(logging.WARNING, logger="hyenarec_hf.data"):
        splits, vocab = build_splits(interactions)
    # 1 item: nowhere; 2 items: train only (both items); 3 items: evaluated, no train pair; 4+: everywhere
    assert splits["train"]["user"] == ["two", "four"]
    assert splits["train"]["input_ids"] == [vocab.encode(["a", "b"]), vocab.encode(["a", "b"])]
    assert splits["validation"]["user"] == splits["test"]["user"] == ["three", "four"]
    counts = interactions.report["splits"]
    assert counts["users_dropped_1_item"] == 1
    assert counts["users_train_only_2_items"] == 1
    assert counts["users_without_train_pair_3_items"] == 1
    assert counts["evaluated_users"] == 2 and counts["train_users"] == 2
    assert "users not in every split" in caplog.text and "'users_dropped_1_item': 1" in caplog.text
    assert "users_dropped_1_item" in splits["test"].info.description


def test_data_with_items_unknown_to_the_model_vocabulary():
    interactions = Interactions(users=["u"], sequences=[["101", "102", "999", "103"]])
    vocab = ItemVocab(RAW_IDS)
    with pytest.raises(ValueError, match=r"1 interactions with 1 items are not in the given vocabulary \(12 items\)"):
        build_splits(interactions, vocab=vocab)
    splits, _ = build_splits(interactions, vocab=vocab, on_unknown="skip")
    assert interactions.report["splits"]["unknown_interactions_skipped"] == 1
    assert splits["test"]["input_ids"] == [vocab.encode(["101", "102"])]


# ---------------------------------------------------------------------------------------------------------------
# Model inputs
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [NUM_ITEMS + 1, -1, 10**6])
def test_out_of_range_item_index_is_a_value_error_before_any_lookup(bad, monkeypatch):
    model = tiny_model()

    def lookup(*args, **kwargs):
        raise AssertionError("the embedding was indexed before the ids were checked")

    monkeypatch.setattr(model.model.item_embeddings, "forward", lookup)
    with pytest.raises(ValueError, match=rf"item index {bad} is outside the model's vocabulary \(1..12, 0 = padding\)"):
        model(torch.tensor([[1, 2, bad]]))


def test_non_integer_input_ids_are_rejected_with_the_fix():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"input_ids must hold integer item indices \(torch.long\), got dtype "):
        model(torch.tensor([[1.0, 2.0]]))


def test_out_of_range_labels_are_rejected():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"label 13 is not an item index \(1..12\); use -100"):
        model(torch.tensor([[1, 2]]), labels=torch.tensor([[2, 13]]))


def test_input_longer_than_the_model_reads_is_refused_by_forward_and_truncated_by_recommend():
    model = tiny_model()  # max_position_embeddings=8
    with pytest.raises(ValueError, match=r"history length 9 exceeds max_position_embeddings=8; keep the most recent"):
        model(torch.ones(1, 9, dtype=torch.long))
    history = [RAW_IDS[i % NUM_ITEMS] for i in (3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7)]  # 14 items
    full = model.recommend(history, k=5, exclude_seen=False, return_scores=True)
    recent = model.recommend(history[-8:], k=5, exclude_seen=False, return_scores=True)
    assert full == recent  # only the 8 most recent items are read
    # exclusion still uses the whole history, including what the model no longer reads
    unseen = model.recommend(history, k=3)
    assert not set(unseen) & set(history)


def test_recommend_on_empty_histories():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"empty.*needs at least one known item"):
        model.recommend([["101"], []], k=3)
    with pytest.raises(ValueError, match=r"empty after skipping unknown ids"):
        model.recommend(["no-such-item"], k=3, on_unknown="skip")
    assert model.recommend([], k=3) == []  # an empty batch, not an empty history


def test_recommend_without_vocabulary_needs_integer_indices():
    model = tiny_model(item_ids=None)
    assert len(model.recommend([1, 2, "3"], k=2)) == 2
    for bad in ("abc", 1.5, True):
        with pytest.raises(ValueError, match=r"item id .* is not an integer: this model has no saved vocabulary"):
            model.recommend([1, bad], k=2)


def test_collator_rejects_non_integer_and_padding_ids():
    collator = NextItemCollator(max_length=4)
    with pytest.raises(ValueError, match=r"row 0 of the batch: `input_ids` must be a flat list of integer item ids"):
        collator([{"input_ids": [1.5, 2.0]}])
    with pytest.raises(ValueError, match=r"row 1 of the batch: item id 0 inside the history; item ids start at 1"):
        collator([{"input_ids": [1, 2]}, {"input_ids": [3, 0, 4]}])
    with pytest.raises(ValueError, match=r"row 0 of the batch has 1 item\(s\); a training history needs at least 2"):
        collator([{"input_ids": [5]}])


# ---------------------------------------------------------------------------------------------------------------
# Settings and configs out of range
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("hidden_size", 0, "an int >= 1"),
        ("hidden_dropout_prob", 1.5, r"a float in \[0, 1\)"),
        ("filter_type", "wavelet", "one of"),
        ("max_position_embeddings", 1, "an int >= 2"),
        ("pad_token_id", 3, r"0 \(item index 0 is padding\)"),
    ],
)
def test_config_field_out_of_range(field, value, allowed):
    with pytest.raises(
        ValueError, match=rf"HyenaRecConfig.{field}={value!r} is not allowed: {field} must be {allowed}"
    ):
        HyenaRecConfig(**{field: value})


def test_config_vocabulary_must_match_num_items():
    with pytest.raises(ValueError, match=r"item_ids must be a list of exactly num_items \(12\) raw ids"):
        HyenaRecConfig(num_items=12, item_ids=RAW_IDS[:-1])


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("batch_size", 0, "an int >= 1"),
        ("learning_rate", float("nan"), "a finite number > 0"),
        ("learning_rate", -1e-3, "a finite number > 0"),
        ("epochs", 0, "a number > 0"),
        ("save_steps", 0, r"None \(per epoch\) or an int >= 1"),
        ("max_length", 0, "an int >= 1"),
        ("train_stride", 300, r"None or an int between 1 and max_length \(200\)"),
        ("max_train_minutes", -5, "None or a number > 0"),
    ],
)
def test_train_settings_out_of_range(field, value, allowed):
    with pytest.raises(ValueError, match=rf"TrainSettings.{field}=.* is not allowed: {field} must be {allowed}"):
        TrainSettings(**{field: value})


def test_cli_reports_bad_settings_without_a_traceback(tmp_path, capsys):
    data = write(tmp_path, "seq.txt", "1 1 2 3 4\n2 2 3 4 5\n")
    out = str(tmp_path / "run")
    assert main(["train", "--data-file", str(data), "--output-dir", out, "--batch-size", "0"]) == 2
    assert "error: TrainSettings.batch_size=0 is not allowed" in capsys.readouterr().err
    assert main(["train", "--data-file", str(data), "--output-dir", out, "--set", "hidden_size=0"]) == 2
    assert "error: HyenaRecConfig.hidden_size=0 is not allowed" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# A diverging loss
# ---------------------------------------------------------------------------------------------------------------


class PoisonWeightsAt(TrainerCallback):
    """Simulates a divergence: the optimizer step `step` leaves NaN in a weight."""

    def __init__(self, step: int):
        self.step = step

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        if state.global_step + 1 == self.step:  # global_step is incremented after this event
            with torch.no_grad():
                model.model.final_norm.weight[0] = float("nan")


def _tiny_run(tmp_path: Path, poison_step: int):
    lines = [f"{u} " + " ".join(str((u + i) % NUM_ITEMS + 1) for i in range(8)) for u in range(40)]
    splits, vocab = build_splits(read_seq(write(tmp_path, "seq.txt", "\n".join(lines))))
    settings = TrainSettings(max_length=8, epochs=1, batch_size=4, eval_batch_size=16, save_steps=2, seed=0)
    model = tiny_model(item_ids=vocab.to_list(), num_items=len(vocab))
    trainer = build_trainer(model, splits, tmp_path / "checkpoints", settings, callbacks=[PoisonWeightsAt(poison_step)])
    return trainer, tmp_path / "checkpoints"


def test_nan_loss_stops_training_naming_the_step_and_keeps_the_last_checkpoint(tmp_path):
    trainer, checkpoints = _tiny_run(tmp_path, poison_step=5)  # saves at steps 2 and 4; NaN weights after step 5
    with pytest.raises(NonFiniteLossError) as err:
        trainer.train()
    message = str(err.value)
    assert message.startswith("the training loss is nan at step 6 (epoch 0.")
    assert "lower the learning rate (now 0.001) or add warmup" in message
    assert message.endswith(f"the last good checkpoint is {checkpoints / 'checkpoint-4'}.")
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-2", "checkpoint-4"]
    model = load_model(checkpoints / "checkpoint-4")  # intact: loads, and every weight is finite
    assert torch.isfinite(model.model.final_norm.weight).all()


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    trainer, checkpoints = _tiny_run(tmp_path, poison_step=4)  # the poisoned step is a save step
    with pytest.raises(NonFiniteLossError, match=r"1 weight tensor\(s\) are no longer finite after step 4 "):
        trainer.train()
    assert sorted(p.name for p in checkpoints.iterdir()) == ["checkpoint-2"]


def test_nan_message_points_to_bf16_when_it_is_on(tmp_path):
    guard = NonFiniteLossGuard(lambda outputs, labels, num_items_in_batch=None: outputs.sum() / 0.0)
    args = SimpleNamespace(learning_rate=0.01, bf16=True, output_dir=str(tmp_path))
    guard.on_train_begin(args, SimpleNamespace(global_step=11, epoch=2.5), None)
    with pytest.raises(NonFiniteLossError) as err:
        guard.compute_loss(torch.ones(2, requires_grad=True), None)
    assert str(err.value) == (
        "the training loss is inf at step 12 (epoch 2.50): training stopped. The run diverged: lower the learning "
        "rate (now 0.01) or add warmup, or train without bf16 (it can overflow), and train again; no checkpoint had "
        "been saved yet."
    )
    with torch.no_grad():  # evaluation: left to the metrics
        assert math.isinf(guard.compute_loss(torch.ones(2), None).item())


# ---------------------------------------------------------------------------------------------------------------
# Broken model folders
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("saved") / "model"
    tiny_model().save_pretrained(folder)
    return folder


@pytest.fixture
def folder(saved, tmp_path) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(saved, copy)
    return copy


def _edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def _edit_weights(folder: Path, edit) -> None:
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def _cut(folder: Path, keep) -> None:
    path = folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: keep(data)])


def test_intact_folder_loads(folder):
    model = load_model(folder)
    assert model.config.item_ids == RAW_IDS and not model.training
    torch.testing.assert_close(model.model.item_embeddings.weight, tiny_model().model.item_embeddings.weight)


BROKEN = {
    "no folder": (lambda f: shutil.rmtree(f), r"model does not exist or is not a folder"),
    "no config.json": (
        lambda f: (f / "config.json").unlink(),
        r"model has no config.json, so it is not a complete model folder: config.json is written last",
    ),
    "config.json not JSON": (
        lambda f: (f / "config.json").write_text('{"model_type": "hyena'),
        r"model/config.json is not valid JSON \(.*\): the file is truncated or corrupted",
    ),
    "config field out of range": (
        lambda f: _edit_config(f, hidden_size=0),
        r"model/config.json: HyenaRecConfig.hidden_size=0 is not allowed: hidden_size must be an int >= 1",
    ),
    "item_ids shorter than num_items": (
        lambda f: _edit_config(f, item_ids=RAW_IDS[:-1]),
        r"model/config.json: HyenaRecConfig.item_ids=.* must be a list of exactly num_items \(12\) raw ids",
    ),
    "no weights": (
        lambda f: (f / "model.safetensors").unlink(),
        r"model has config.json but no model.safetensors: the weights are missing",
    ),
    "truncated weights": (
        lambda f: _cut(f, lambda data: len(data) - 100),
        r"model/model.safetensors is truncated: its header describes \d[\d,]* bytes but the file holds",
    ),
    "truncated inside the header": (
        lambda f: _cut(f, lambda data: 100),
        r"model/model.safetensors is truncated or corrupted: its first 8 bytes announce a [\d,]+-byte header",
    ),
    "truncated to nothing": (
        lambda f: _cut(f, lambda data: 3),
        r"model/model.safetensors is truncated: 3 bytes, not even the 8-byte header length",
    ),
    "garbage weights": (
        lambda f: (f / "model.safetensors").write_bytes(struct.pack("<Q", 2**40) + b"\x00" * 64),
        r"model/model.safetensors is truncated or corrupted: its first 8 bytes announce a 1,099,511,627,776-byte",
    ),
    "corrupted header": (
        lambda f: _overwrite(f / "model.safetensors", 8, b"#"),
        r"model/model.safetensors is corrupted: its header is not valid JSON",
    ),
    "bytes appended": (
        lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes() + b"junk"),
        r"model/model.safetensors is corrupted: 4 bytes follow the last tensor its header describes",
    ),
    "tensor missing": (
        lambda f: _edit_weights(f, lambda t: t.pop("model.final_norm.weight")),
        r"model/model.safetensors lacks 1 tensor\(s\) the model needs \(model.final_norm.weight\); transformers "
        r"would fill them with random values",
    ),
    "NaN weights": (
        lambda f: _edit_weights(f, lambda t: t["model.final_norm.bias"].fill_(float("nan"))),
        r"model/model.safetensors holds NaN or infinite values in model.final_norm.bias: the run diverged",
    ),
    "vocabulary of another run": (
        lambda f: _edit_config(f, num_items=10, item_ids=RAW_IDS[:10]),
        r"the vocabulary of .*model/config.json does not match .*model/model.safetensors: the config declares "
        r"num_items=10 \(10 item_ids\) \(an item table of \(11, 8\)\), the weights hold an item table of \(13, 8\)",
    ),
}


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset : offset + len(data)] = data
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_model_folder_names_the_file_and_the_fix(folder, case):
    breaker, message = BROKEN[case]
    breaker(folder)
    with pytest.raises(CheckpointError, match=message):
        load_model(folder)


def test_safetensors_check_catches_a_tensor_whose_size_disagrees_with_its_shape(folder):
    path = folder / "model.safetensors"
    (header_len,) = struct.unpack("<Q", path.read_bytes()[:8])
    header = json.loads(path.read_bytes()[8 : 8 + header_len])
    name = "model.final_norm.weight"
    header[name]["shape"] = [header[name]["shape"][0] // 2]  # [8] -> [4]: same header length
    text = json.dumps(header, separators=(",", ":")).encode()
    assert len(text) <= header_len
    text += b" " * (header_len - len(text))  # same length: only the shape is wrong
    _overwrite(path, 8, text)
    with pytest.raises(CheckpointError, match=rf"tensor '{name}' \(F32 \[4\]\) is given 32 bytes instead of 16"):
        check_safetensors(path)


def test_cli_commands_report_a_broken_folder(folder, capsys):
    _cut(folder, lambda data: len(data) // 2)
    assert main(["recommend", str(folder), "--history", "101 102"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "model.safetensors is truncated" in err and "Traceback" not in err


def test_cpu_bf16_detection_reads_the_cpu_flags(tmp_path):
    for flags, expected in (
        ("fpu sse2 avx2 fma", False),
        ("fpu avx2 avx512f avx512_bf16", True),
        ("fpu avx512f amx_tile amx_bf16", True),
        ("fpu avx512f avx512_bf16_extra", False),  # whole flags only
    ):
        cpuinfo = tmp_path / "cpuinfo"
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
        assert training.cpu_has_native_bf16(cpuinfo) is expected
    assert training.cpu_has_native_bf16(tmp_path / "missing") is None
    real = set(Path("/proc/cpuinfo").read_text().split()) if Path("/proc/cpuinfo").exists() else None
    assert training.cpu_has_native_bf16() is (None if real is None else bool(real & {"avx512_bf16", "amx_bf16"}))


def test_cpu_model_name_reads_the_first_model_name_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel\t\t: 17\nmodel name\t: AMD EPYC 9R14\n\n"
        "processor\t: 1\nmodel name\t: AMD EPYC 9R14\n"
    )
    assert training.cpu_model_name(cpuinfo) == "AMD EPYC 9R14"  # not the `model` number line
    cpuinfo.write_text("processor\t: 0\nBogoMIPS\t: 50.00\nmodel name\t: \n")
    assert training.cpu_model_name(cpuinfo) is None  # blank, or absent (some ARM kernels)
    assert training.cpu_model_name(tmp_path / "missing") is None


@pytest.mark.parametrize("native, warns", [(False, True), (True, False), (None, False)])
def test_bf16_on_a_cpu_without_bf16_arithmetic_warns_with_the_fix(monkeypatch, caplog, native, warns):
    # The hardware is what it is here; the detector is replaced to cover both kinds of CPU.
    monkeypatch.setattr(training, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="hyenarec_hf.training"):
        training._warn_if_bf16_is_emulated(TrainSettings(bf16=True))
        training._warn_if_bf16_is_emulated(TrainSettings(bf16=False))
    messages = [r.getMessage() for r in caplog.records if "AVX512-BF16" in r.getMessage()]
    assert len(messages) == (1 if warns else 0)
    if warns:
        assert "Drop --bf16" in messages[0]
