"""The "will it fit" dry run on a tiny config: real optimizer steps, a JSON and a Markdown row."""
from __future__ import annotations

import json

import pytest
import torch

from workflow.core.cli import run
from workflow.models.accounting import account
from workflow.models.zoo import architecture
from workflow.recipe import Recipe, RuntimeParams
from workflow.tools.dry_run import main as dry_run
from workflow.tools.dry_run import markdown, measure


def test_dry_run_writes_a_json_and_a_markdown_row(tmp_path, capsys):
    out = tmp_path / "rows" / "vit-tiny-lora.json"
    argv = ["--model", "vit-tiny", "--method", "lora", "--r", "4", "--batch-size", "2", "--steps", "1",
            "--num-labels", "10", "--device", "cpu", "--out", str(out)]
    assert run(dry_run, argv) == 0
    row = json.loads(out.read_text())
    expected = account(architecture("vit-tiny", num_labels=10), Recipe.of("vit-tiny", "lora", r=4))
    assert (row["trainable"], row["total"]) == (expected.trainable, expected.total)
    assert row["model_class"] == "ViTForImageClassification" and row["image_size"] == 32
    assert row["device"].startswith("cpu") and row["memory_measure"] == "peak RSS of a fresh process"
    assert row["peak_memory_mib"] >= row["memory_before_steps_mib"] > 0 and row["s_per_step"] > 0
    table = out.with_suffix(".md").read_text().splitlines()
    assert table[0].startswith("| model | method | image | batch |") and table[2].startswith("| vit-tiny | lora r=4")
    assert "| vit-tiny | lora r=4" in capsys.readouterr().out


@pytest.fixture
def one_thread():
    """Tiny models: a second thread only adds sync overhead, ruinous on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


CPU = RuntimeParams(device="cpu")


def test_measure_in_process_at_another_image_size(one_thread):
    # The isolated run calls this same function in a fresh interpreter.
    row = measure(Recipe.of("resnet-tiny", "full"), 2, 1, CPU, {"num_labels": 3, "image_size": 48})
    assert row["image_size"] == 48 and row["trainable"] == row["total"]
    assert "| resnet-tiny | full | 48 | 2 | cpu" in markdown([row])


@pytest.mark.parametrize("argv, message", [
    (["--model", "acme/nope"], "error: model: no architecture config for 'acme/nope'"),
    (["--model", "vit-tiny", "--batch-size", "0"], "error: --batch-size and --steps: must be >= 1"),
    (["--model", "resnet-tiny", "--targets", "query"], "error: lora.targets: 'query' matches no Linear/Conv2d"),
])
def test_bad_input_is_one_line(argv, message, capsys):
    assert run(dry_run, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message)


def test_the_dry_run_computes_as_the_run_does_and_shows_what_each_setting_saves(one_thread):
    # The run's precision, frozen-weight dtype and checkpointing come from the same code as train's
    # (workflow/training/runtime.py place), so the dry run's breakdown shows what each saves.
    lora, size = Recipe.of("beit-tiny", "lora"), {"num_labels": 3, "image_size": 128}  # 65 tokens a image
    fp32 = measure(lora, 8, 1, CPU, size)
    bf16 = measure(lora, 8, 1, RuntimeParams(device="cpu", precision="bf16"), size)
    checkpointed = measure(lora, 8, 1, RuntimeParams(device="cpu", gradient_checkpointing=True), size)
    assert (fp32["precision"], bf16["precision"]) == ("fp32", "bf16") and checkpointed["gradient_checkpointing"]
    assert bf16["breakdown"]["weights_mib"] < 0.6 * fp32["breakdown"]["weights_mib"]  # frozen base in bf16
    assert checkpointed["breakdown"]["activations_mib"] < 0.5 * fp32["breakdown"]["activations_mib"]
    assert fp32["breakdown"]["activations_mib"] > 1  # a real amount, not rounding
