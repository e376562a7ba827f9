"""torch.compile pays off: one batch shape, no recompilation after the first epoch, auto by device and size."""
from __future__ import annotations

import os

import pytest
import torch
from helpers import REPO, write_params
from test_stages import run_stages

from workflow.data.labelled import LabelledData
from workflow.models.predict import pad_rows, predict_logits
from workflow.recipe import Recipe, RuntimeParams
from workflow.training import runtime as rt
from workflow.training.loop import fit

BATCH = 16  # 1,365 training and 72 validation images: both end in a partial batch


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compile")
    os.chdir(REPO)  # model.name is relative to the repository root, as in dvc.yaml
    run_stages(folder, write_params(folder), "download", "split", "augment", "cache")
    return LabelledData.load(folder / "raw", folder / "split", folder / "pipelines.json", folder / "cache")


def test_compiled_training_compiles_nothing_after_the_first_epoch(data, monkeypatch):
    graphs = []  # the example inputs of every graph dynamo hands its backend: one per (re)compilation

    def counting_backend(graph, inputs):
        graphs.append([x.shape[0] for x in inputs if isinstance(x, torch.Tensor) and x.shape[1:] == (3, 32, 32)])
        return graph.forward  # run it eagerly: the count is what is tested, not inductor's kernels

    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **options: compile_(model, backend=counting_backend,
                                                                           **options))
    after_epoch = []
    recipe = Recipe.of("configs/models/beit-tiny.json", "lora", targets=["query", "value"])
    recipe = recipe.override({"train": {"epochs": 3, "batch_size": BATCH}})
    assert len(data.train) % BATCH and len(data.val) % BATCH  # a partial batch would be a new shape
    result = fit(recipe, data, RuntimeParams(device="cpu", compile=True),
                 on_epoch=lambda row: after_epoch.append(len(graphs)))
    assert after_epoch[0] > 0 and after_epoch == [after_epoch[0]] * 3, after_epoch  # train, validate, x3
    # One batch size: the last partial batches never reach a graph.
    assert {rows for images in graphs for rows in images} == {BATCH}, graphs
    assert len(result.val_logits) == len(data.val)  # the padding of the last validation batch is dropped
    torch._dynamo.reset()


def test_a_padded_evaluation_batch_gives_the_same_logits_for_its_real_rows():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))

    class Out(torch.nn.Module):
        def forward(self, pixel_values):
            return type("O", (), {"logits": model(pixel_values)})

    loader = [(torch.randn(4, 3, 2, 2), None), (torch.randn(3, 3, 2, 2), None)]
    cpu = torch.device("cpu")
    plain = predict_logits(Out(), loader, rt.Compute(cpu))
    padded = predict_logits(Out(), loader, rt.Compute(cpu, pad_to=4))
    assert padded.shape == (7, 3) and torch.equal(torch.from_numpy(plain), torch.from_numpy(padded))
    nhwc = torch.randn(3, 3, 2, 2).contiguous(memory_format=torch.channels_last)
    rows, real = pad_rows(nhwc, 4)
    assert real == 3 and rows.shape[0] == 4 and rows.is_contiguous(memory_format=torch.channels_last)


def test_auto_compiles_on_cuda_for_large_models_and_picks_the_cpu_for_tiny_ones(monkeypatch):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert rt.wants_compile("auto", cuda, rt.COMPILE_MIN_PARAMETERS)
    assert not rt.wants_compile("auto", cuda, rt.COMPILE_MIN_PARAMETERS - 1)
    assert not rt.wants_compile("auto", cpu, 300_000_000)
    assert rt.wants_compile(True, cpu, 1) and not rt.wants_compile(False, cuda, 300_000_000)
    # device auto, as on a GPU machine: the default's 192,586-parameter model stays on the CPU, and says why.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert rt.pick_device("auto", 192_586) == cpu and rt.pick_device("auto", 86_000_000) == cuda
    assert rt.pick_device("cpu", 86_000_000) == cpu
    note = rt.device_reason("auto", cpu, 192_586)
    assert note.startswith("device auto: the CPU, not the GPU, for a model of 192,586 parameters")
    assert rt.device_reason("cpu", cpu, 192_586) == ""
