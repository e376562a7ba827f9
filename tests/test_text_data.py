"""The text path below the stages: the token cache, per-batch padding, length-ordered prediction,
text models and tokenizers from the zoo's names, and the two-class F1."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import REPO

from workflow.core.errors import UserError
from workflow.data.dataset import make_loader
from workflow.data.token_cache import TokenCache
from workflow.data.tokens import CachedTokens
from workflow.models.names import packaged_dir
from workflow.models.predict import predict_logits
from workflow.models.scores import classification_scores
from workflow.models.tokenizers import fingerprint, load_tokenizer
from workflow.models.zoo import load_model
from workflow.training.runtime import Compute

TINY = str(REPO / "configs/models/bert-tiny.json")
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TEXTS = ["a fine film", "dull", "one of the most moving and beautifully acted dramas of the year, by far",
         "not good", "great", "an utter waste of two hours of anybody's life"]


def raw_folder(tmp_path, pair: bool = False):
    raw = tmp_path / "raw"
    raw.mkdir()
    train = pd.DataFrame({"id": [f"t{i}" for i in range(4)], "label": ["fresh", "rotten", "fresh", "rotten"],
                          "text": TEXTS[:4]})
    test = pd.DataFrame({"id": ["t0", "x1"], "text": TEXTS[4:]})  # a test id may repeat a train id
    if pair:
        train["text_pair"], test["text_pair"] = TEXTS[2:6], TEXTS[:2]
    train.to_csv(raw / "train.csv", index=False)
    test.to_csv(raw / "test.csv", index=False)
    return raw


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(TINY)


def test_the_cache_tokenizes_once_counts_truncation_and_round_trips(tmp_path, tokenizer):
    raw = raw_folder(tmp_path)
    tokens = TokenCache.tokenize(raw, tokenizer, TINY, max_length=8)
    full = [len(ids) for ids in tokenizer(TEXTS)["input_ids"]]
    assert list(tokens.lengths) == [min(n, 8) for n in full]
    assert tokens.meta["truncated"] == sum(n > 8 for n in full) == 2 and tokens.meta["longest_tokens"] == max(full)
    assert tokens.rows_of(["t0"], "train")[0] != tokens.rows_of(["t0"], "test")[0]  # train and test apart
    tokens.write(tmp_path / "cache")
    opened = TokenCache.open(tmp_path / "cache", raw)
    assert opened.array_sha256 == tokens.array_sha256 and np.array_equal(opened.input_ids, tokens.input_ids)
    assert json.loads((tmp_path / "cache/cache.json").read_text())["tokenizer_sha256"] == fingerprint(tokenizer)


def test_a_damaged_or_stale_cache_is_refused_in_one_line(tmp_path, tokenizer):
    raw = raw_folder(tmp_path)
    TokenCache.tokenize(raw, tokenizer, TINY, max_length=8).write(tmp_path / "cache")
    ids = np.load(tmp_path / "cache/input_ids.npy")
    ids[0, 0] += 1
    np.save(tmp_path / "cache/input_ids.npy", ids)
    with pytest.raises(UserError, match="differ from the sha256 recorded in cache.json"):
        TokenCache.open(tmp_path / "cache", raw)
    (raw / "test.csv").write_text("id,text\nt9,new\n")
    with pytest.raises(UserError, match="built from other rows than"):
        TokenCache.open(tmp_path / "cache", raw)
    with pytest.raises(UserError, match="no token cache here"):
        TokenCache.open(tmp_path / "nowhere", raw)


def test_batches_are_cut_to_their_longest_row_and_pairs_keep_their_segments(tmp_path, tokenizer):
    tokens = TokenCache.tokenize(raw_folder(tmp_path, pair=True), tokenizer, TINY, max_length=64)
    dataset = CachedTokens(tokens, ["t0", "t1", "t3"], "train", labels=[0, 1, 1])
    features, labels = dataset.__getitems__([0, 1])
    lengths = tokens.lengths[tokens.rows_of(["t0", "t1"], "train")]
    assert features["input_ids"].shape == (2, max(lengths)) and labels.tolist() == [0, 1]
    assert features["attention_mask"].sum(1).tolist() == list(lengths)
    expected = tokenizer(TEXTS[0], TEXTS[2])
    assert features["input_ids"][0, :lengths[0]].tolist() == expected["input_ids"]
    assert features["token_type_ids"][0, :lengths[0]].tolist() == expected["token_type_ids"]


def test_length_ordered_prediction_gives_the_same_logits_in_the_sets_order(tmp_path, tokenizer):
    tokens = TokenCache.tokenize(raw_folder(tmp_path), tokenizer, TINY, max_length=32)
    model = load_model(TINY, ["fresh", "rotten"], seed=0, task="text").eval()
    ids = ["t0", "t1", "t2", "t3"]
    by_length = CachedTokens(tokens, ids, "train", by_length=True)
    assert list(by_length.order) == list(np.argsort(-tokens.lengths[tokens.rows_of(ids, "train")], kind="stable"))
    compute = Compute(torch.device("cpu"))
    as_given = predict_logits(model, make_loader(CachedTokens(tokens, ids, "train"), 2, 0), compute)
    ordered = predict_logits(model, make_loader(by_length, 2, 0), compute)
    one_by_one = predict_logits(model, make_loader(CachedTokens(tokens, ids, "train"), 1, 0), compute)
    np.testing.assert_allclose(ordered, as_given, atol=1e-5)
    np.testing.assert_allclose(ordered, one_by_one, atol=1e-5)  # padding in a batch changes nothing


def test_another_tokenizer_tokenizes_in_memory_and_says_so(tmp_path, tokenizer):
    from transformers import BertTokenizerFast

    raw = raw_folder(tmp_path)
    tokens = TokenCache.tokenize(raw, tokenizer, TINY, max_length=16)
    assert tokens.for_tokenizer(raw, load_tokenizer(MINILM), MINILM) == (tokens, "")  # the same tokenizer
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "fine", "film"]) + "\n")
    other = BertTokenizerFast(vocab_file=str(vocab))
    again, note = tokens.for_tokenizer(raw, other, "my-bert")
    assert "tokenizes differently" in note and again.meta["tokenizer"] == "my-bert"
    row = again.rows_of(["t0"], "train")[0]
    assert again.input_ids[row, :5].tolist() == other("a fine film")["input_ids"][:5]  # its own ids: [CLS]=2
    assert again.input_ids[row, 0] == 2 != tokens.input_ids[row, 0]


def test_text_models_and_tokenizers_load_through_the_zoos_names():
    assert packaged_dir(MINILM) is not None and (packaged_dir(MINILM) / "model.safetensors").is_file()
    minilm = load_model(MINILM, ["a", "b"], seed=0, task="text")
    assert type(minilm).__name__ == "BertForSequenceClassification" and minilm.config.num_hidden_layers == 6
    # Real pretrained weights: the word embeddings are not a fresh init (std 0.02 normal).
    assert abs(minilm.bert.embeddings.word_embeddings.weight.std().item() - 0.02) > 0.005
    assert fingerprint(load_tokenizer(TINY)) == fingerprint(load_tokenizer(MINILM))
    with pytest.raises(UserError, match="is not an image-classification model, which this image task needs"):
        load_model(TINY, ["a", "b"], seed=0)
    with pytest.raises(UserError, match=r"is not a text-classification \(sequence-classification\) model, which this text task needs"):
        load_model(str(REPO / "configs/models/vit-tiny.json"), ["a", "b"], seed=0, task="text")


def test_a_text_config_without_a_tokenizer_names_the_key(tmp_path):
    config = json.loads((REPO / "configs/models/bert-tiny.json").read_text())
    del config["tokenizer"]
    (tmp_path / "bert.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match='needs a "tokenizer" key naming the model whose tokenizer it uses'):
        load_tokenizer(str(tmp_path / "bert.json"))


def test_two_classes_also_report_binary_f1_of_the_second_class():
    labels = np.array([0, 0, 1, 1])
    logits = np.array([[1, 0], [0, 1], [0, 1], [0, 1]], dtype=float)
    scores = classification_scores(labels, logits)
    assert scores["accuracy"] == 0.75 and scores["f1"] == pytest.approx(0.8)  # precision 2/3, recall 1
    assert "f1" not in classification_scores(np.array([0, 1, 2]), np.eye(3))


def test_a_local_model_folder_loads_its_weights_and_its_own_tokenizer(tmp_path):
    # A user's fine-tuned or downloaded model: from_pretrained on a folder, the path a hub id takes too.
    trained = load_model(TINY, ["a", "b"], seed=3, task="text")
    trained.save_pretrained(tmp_path / "mine")
    load_tokenizer(TINY).save_pretrained(tmp_path / "mine")
    loaded = load_model(str(tmp_path / "mine"), ["x", "y", "z"], seed=0, task="text")
    assert torch.equal(loaded.bert.embeddings.word_embeddings.weight, trained.bert.embeddings.word_embeddings.weight)
    assert loaded.classifier.out_features == 3  # a fresh head for this competition's classes
    assert fingerprint(load_tokenizer(str(tmp_path / "mine"))) == fingerprint(load_tokenizer(TINY))


@pytest.mark.parametrize("call, expected", [
    ("load_model('bert-base-uncased', ['a', 'b'], seed=0, task='text')",
     "error: model.name: 'bert-base-uncased' is not a shipped config in configs/models/ and could not be loaded"),
    ("load_tokenizer('bert-base-uncased')", "error: model.name: no tokenizer for 'bert-base-uncased' ("),
])
def test_a_hub_text_model_offline_is_a_clear_error(call, expected):
    # The same loader a user's hub id goes through; the hub client reads HF_HUB_OFFLINE at import.
    code = ("from workflow.core.cli import run; from workflow.models.zoo import load_model; "
            "from workflow.models.tokenizers import load_tokenizer; "
            f"raise SystemExit(run(lambda argv: {call}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(expected), result.stderr


@pytest.fixture(scope="module")
def reviews(tmp_path_factory):
    """The builtin reviews competition, small, through the real download, split, augment and cache stages."""
    from helpers import write_params
    from test_stages import run_stages

    folder = tmp_path_factory.mktemp("reviews")
    os.chdir(REPO)  # model.name is relative to the repository root, as in dvc.yaml
    params = write_params(folder, {"data.builtin": "reviews", "data.builtin_rows": 120, "cache.max_length": 24,
                                   "model.name": "configs/models/bert-tiny.json"})
    run_stages(folder, params, "download", "split", "augment", "cache")
    return folder


class Killed(Exception):
    pass


def test_a_killed_text_run_resumes_bit_identical(reviews, tmp_path):
    from workflow.data.labelled import LabelledData
    from workflow.recipe import Recipe, RuntimeParams
    from workflow.training.loop import fit

    data = LabelledData.load(reviews / "raw", reviews / "split", reviews / "pipelines.json", reviews / "cache")
    assert data.task == "text" and len(data.train) > 80
    recipe = Recipe.of(TINY, "lora", lr=0.005, batch_size=16, epochs=3)
    cpu = RuntimeParams(device="cpu")
    clean = fit(recipe, data, cpu, checkpoint=tmp_path / "clean")

    def killed_in_epoch_2(row):
        if row["epoch"] == 2:  # before epoch 2's checkpoint is written, as a SIGKILL would be
            raise Killed

    with pytest.raises(Killed):
        fit(recipe, data, cpu, checkpoint=tmp_path / "killed", on_epoch=killed_in_epoch_2)
    resumed = fit(recipe, data, cpu, checkpoint=tmp_path / "killed")
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    assert resumed.history == clean.history and np.array_equal(resumed.val_logits, clean.val_logits)
    for (name, a), (_, b) in zip(clean.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name
