"""The download stage on real files: tiny PNG/JPEG images, real zips and tars, the real CLI."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from helpers import write_params
from PIL import Image

from workflow.core.errors import UserError
from workflow.data import images, kaggle_source
from workflow.data.images import load_rgb
from workflow.stages.download import main

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = ("train.csv", "test.csv", "sample_submission.csv", "skipped_images.csv", "competition.json")
TEST_IDS = ["007", "010", "2"]  # leading zeros must survive; not in sorted order on purpose


def write_data_params(tmp_path: Path, **data) -> Path:
    return write_params(tmp_path, {f"data.{key}": value for key, value in data.items()})


def make_image(path: Path, shade: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    Image.new("RGB", (6, 5), (shade, 100, 200)).save(path, format=fmt)


def imagefolder_competition(root: Path, ext: str = ".png", test_ext: str = ".png") -> Path:
    for i, (label, name) in enumerate([("cat", "a"), ("cat", "b"), ("dog", "c"), ("dog", "d")]):
        make_image(root / "train" / label / f"{name}{ext}", shade=40 * i)
    for image_id in TEST_IDS:
        make_image(root / "test" / f"{image_id}{test_ext}")
    pd.DataFrame({"id": TEST_IDS, "label": "cat"}).to_csv(root / "sample_submission.csv", index=False)
    return root


def labels_csv_competition(root: Path, ext: str = ".jpg") -> Path:
    labels = {"img_3": "dog", "img_1": "cat", "img_2": "cat"}
    for name in labels:
        make_image(root / "train" / f"{name}{ext}")
    pd.DataFrame({"image": list(labels), "breed": list(labels.values())}).to_csv(root / "train.csv", index=False)
    for image_id in TEST_IDS:
        make_image(root / "test_images" / f"{image_id}{ext}")
    pd.DataFrame({"image": TEST_IDS, "breed": "dog"}).to_csv(root / "sample_submission.csv", index=False)
    return root


def make_zip(folder: Path, archive: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(folder).as_posix())
    return archive


def download(tmp_path: Path, **data) -> Path:
    out = tmp_path / "raw"
    main(["--params", str(write_data_params(tmp_path, **data)), "--out", str(out)])
    return out


def read(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / name, dtype=str, keep_default_na=False)


def check_consistent(out: Path) -> dict:
    """The contract other stages rely on, checked on any output folder."""
    info = json.loads((out / "competition.json").read_text())
    train, test, submission = read(out, "train.csv"), read(out, "test.csv"), read(out, "sample_submission.csv")
    assert list(train.columns) == ["path", "label"] and list(test.columns) == ["id", "path"]
    assert list(train["path"]) == sorted(train["path"])
    assert list(test["id"]) == list(submission.iloc[:, 0])
    assert all((out / path).is_file() for path in [*train["path"], *test["path"]])
    assert info["classes"] == sorted(set(train["label"]))
    assert (info["num_train"], info["num_test"]) == (len(train), len(test))
    assert info["submission_columns"] == list(submission.columns)
    assert info["id_column"] == submission.columns[0]
    return info


def tree_bytes(folder: Path) -> dict[str, bytes]:
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in files}


def test_builtin_writes_real_digit_images_deterministically(tmp_path):
    out = download(tmp_path / "one", source="builtin")
    info = check_consistent(out)
    assert info["source"] == "builtin" and info["layout"] == "csv" and info["format"] == "label"
    assert info["classes"] == [str(d) for d in range(10)]
    assert info["num_train"] + info["num_test"] == 1797
    assert info["num_test"] == pytest.approx(1797 * 0.2, abs=1)
    test = read(out, "test.csv")
    assert list(test["id"]) != sorted(test["id"])  # the submission order is kept, not re-sorted
    image = load_rgb(out / read(out, "train.csv")["path"][0])
    assert image.shape == (32, 32, 3) and image.max() > image.min()
    assert tree_bytes(out) == tree_bytes(download(tmp_path / "two", source="builtin"))


def test_local_zip_imagefolder(tmp_path):
    archive = make_zip(imagefolder_competition(tmp_path / "comp"), tmp_path / "comp.zip")
    out = download(tmp_path, source="local", path=str(archive))
    info = check_consistent(out)
    assert (info["layout"], info["format"], info["label_column"]) == ("imagefolder", "label", "label")
    assert info["classes"] == ["cat", "dog"]
    assert read(out, "train.csv").values.tolist() == [
        ["files/train/cat/a.png", "cat"], ["files/train/cat/b.png", "cat"],
        ["files/train/dog/c.png", "dog"], ["files/train/dog/d.png", "dog"],
    ]
    assert read(out, "test.csv").values.tolist() == [[i, f"files/test/{i}.png"] for i in TEST_IDS]
    assert (out / "sample_submission.csv").read_bytes() == (tmp_path / "comp" / "sample_submission.csv").read_bytes()
    assert not list(out.glob(".*")) and not list(tmp_path.glob(".raw*"))  # no scratch or temp left


def test_local_zip_labels_csv_with_ids_without_extension(tmp_path):
    archive = make_zip(labels_csv_competition(tmp_path / "comp"), tmp_path / "comp.zip")
    out = download(tmp_path, source="local", path=str(archive))
    info = check_consistent(out)
    assert (info["layout"], info["id_column"], info["label_column"]) == ("csv", "image", "breed")
    assert read(out, "train.csv").values.tolist() == [
        ["files/train/img_1.jpg", "cat"], ["files/train/img_2.jpg", "cat"], ["files/train/img_3.jpg", "dog"],
    ]
    assert list(read(out, "test.csv")["path"]) == [f"files/test_images/{i}.jpg" for i in TEST_IDS]


def test_labels_csv_with_extra_columns_uses_the_submission_label_column(tmp_path):
    root = labels_csv_competition(tmp_path / "comp")
    train = read(root, "train.csv").assign(width="6", id=lambda f: f["image"] + ".jpg")[["id", "width", "breed"]]
    train.to_csv(root / "train.csv", index=False)  # ids with the extension this time
    out = download(tmp_path, source="local", path=str(root))
    assert list(read(out, "train.csv")["label"]) == ["cat", "cat", "dog"]

    train.rename(columns={"breed": "kind"}).to_csv(root / "train.csv", index=False)
    with pytest.raises(UserError, match=r"train.csv: found columns \['id', 'width', 'kind'\].*'breed'"):
        download(tmp_path, source="local", path=str(root))


def test_local_folder_and_tar_give_the_same_manifests(tmp_path):
    root = imagefolder_competition(tmp_path / "comp")
    from_folder = download(tmp_path / "a", source="local", path=str(root))
    archive = tmp_path / "comp.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(root, arcname="comp")
    from_tar = download(tmp_path / "b", source="local", path=str(archive))
    for name in MANIFESTS:
        assert (from_folder / name).read_bytes() == (from_tar / name).read_bytes()
    assert root.is_dir()  # a local folder is copied, never moved


def test_zip_with_nested_top_level_folders(tmp_path):
    archive = make_zip(imagefolder_competition(tmp_path / "comp"), tmp_path / "comp.zip", prefix="comp/comp/")
    out = download(tmp_path, source="local", path=str(archive))
    check_consistent(out)
    assert (out / "files" / "sample_submission.csv").is_file()
    assert read(out, "train.csv")["path"][0] == "files/train/cat/a.png"


@pytest.mark.parametrize("build", [
    lambda root: imagefolder_competition(root, ext=".JPG", test_ext=".PNG"),
    lambda root: labels_csv_competition(root, ext=".PNG"),
], ids=["imagefolder", "labels-csv"])
def test_upper_case_extensions(tmp_path, build):
    root = build(tmp_path / "comp")
    out = download(tmp_path, source="local", path=str(make_zip(root, tmp_path / "comp.zip")))
    info = check_consistent(out)
    assert info["num_train"] >= 3 and info["num_test"] == 3
    assert all(path.endswith((".PNG", ".JPG")) for path in read(out, "train.csv")["path"])


def test_missing_test_image_names_the_id_and_line(tmp_path):
    root = imagefolder_competition(tmp_path / "comp")
    (root / "test" / "010.png").unlink()
    with pytest.raises(UserError, match=r"sample_submission.csv line 3: no test image for id '010'"):
        download(tmp_path, source="local", path=str(root))
    assert not (tmp_path / "raw").exists()


def test_probabilities_submission_format(tmp_path):
    root = imagefolder_competition(tmp_path / "comp")
    pd.DataFrame({"id": TEST_IDS, "dog": "0.5", "cat": "0.5"}).to_csv(root / "sample_submission.csv", index=False)
    info = check_consistent(download(tmp_path, source="local", path=str(root)))
    assert (info["format"], info["label_column"]) == ("probabilities", None)
    assert info["submission_columns"] == ["id", "dog", "cat"]

    pd.DataFrame({"id": TEST_IDS, "dog": "0", "bird": "0"}).to_csv(root / "sample_submission.csv", index=False)
    with pytest.raises(UserError, match=r"sample_submission.csv: columns \['id', 'dog', 'bird'\] fit no known format"):
        download(tmp_path, source="local", path=str(root))


def test_zip_slip_archive_is_refused(tmp_path):
    archive = make_zip(imagefolder_competition(tmp_path / "comp"), tmp_path / "evil.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("../evil.txt", "pwned")
    with pytest.raises(UserError, match="path traversal"):
        download(tmp_path, source="local", path=str(archive))
    assert not list(tmp_path.rglob("evil.txt")) and not (tmp_path / "raw").exists()


def zip_in_place(folder: Path, archive: Path, prefix: str = "") -> None:
    """Replace `folder` by `archive`, as Kaggle ships train.zip instead of train/."""
    make_zip(folder, archive, prefix)
    shutil.rmtree(folder)


def assert_same_manifests(a: Path, b: Path) -> None:
    for name in MANIFESTS:
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_inner_zips_are_extracted_in_the_root(tmp_path):
    # As in dogs-vs-cats: train.zip wraps one train/ folder, test.zip holds loose images.
    root = imagefolder_competition(tmp_path / "comp")
    plain = download(tmp_path / "plain", source="local", path=str(root))
    zip_in_place(root / "train", root / "train.zip", prefix="train/")
    zip_in_place(root / "test", root / "test.zip")
    out = download(tmp_path / "packed", source="local", path=str(make_zip(root, tmp_path / "comp.zip")))
    assert_same_manifests(plain, out)  # files/train/cat/a.png, not files/train/train/cat/a.png
    assert sorted(path.name for path in (out / "files").iterdir()) == ["sample_submission.csv", "test", "train"]
    assert not list(out.glob(".*"))  # no scratch left


def test_inner_tar_of_loose_images_next_to_train_csv(tmp_path):
    root = labels_csv_competition(tmp_path / "comp")
    plain = download(tmp_path / "plain", source="local", path=str(root))
    with tarfile.open(root / "train.tar.gz", "w:gz") as tf:
        for image in sorted((root / "train").iterdir()):
            tf.add(image, arcname=image.name)
    shutil.rmtree(root / "train")
    out = download(tmp_path / "packed", source="local", path=str(make_zip(root, tmp_path / "comp.zip")))
    assert_same_manifests(plain, out)  # the loose images went to files/train/, named after the archive
    assert not (out / "files" / "train.tar.gz").exists()


def test_inner_archives_with_several_folders_and_a_zipped_sample_submission(tmp_path):
    # As in state-farm-distracted-driver-detection: imgs.zip holds train/ and test/, and the CSV is zipped too.
    root = imagefolder_competition(tmp_path / "comp")
    plain = download(tmp_path / "plain", source="local", path=str(root))
    with zipfile.ZipFile(root / "imgs.zip", "w") as zf:
        for path in sorted((root / "train").rglob("*.png")) + sorted((root / "test").rglob("*.png")):
            zf.write(path, path.relative_to(root).as_posix())
    with zipfile.ZipFile(root / "sample_submission.csv.zip", "w") as zf:
        zf.write(root / "sample_submission.csv", "sample_submission.csv")
    for path in (root / "train", root / "test", root / "sample_submission.csv"):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    out = download(tmp_path / "packed", source="local", path=str(root))
    assert_same_manifests(plain, out)
    assert sorted(path.name for path in root.iterdir()) == ["imgs.zip", "sample_submission.csv.zip"]  # only the copy changes


def test_archives_one_folder_down_are_extracted(tmp_path):
    root = imagefolder_competition(tmp_path / "comp")
    plain = download(tmp_path / "plain", source="local", path=str(root))
    for label in ("cat", "dog"):
        zip_in_place(root / "train" / label, root / "train" / f"{label}.zip")  # loose images -> train/<label>/
    out = download(tmp_path / "packed", source="local", path=str(make_zip(root, tmp_path / "comp.zip")))
    assert_same_manifests(plain, out)
    assert not list((out / "files").rglob("*.zip"))


def test_inner_archives_may_share_identical_files(tmp_path):
    # Two parts of one training set that both ship the same sample_submission.csv: nothing is lost.
    root = imagefolder_competition(tmp_path / "comp")
    plain = download(tmp_path / "plain", source="local", path=str(root))
    for part, label in (("train_1.zip", "cat"), ("train_2.zip", "dog")):
        with zipfile.ZipFile(root / part, "w") as zf:
            for path in sorted((root / "train" / label).iterdir()):
                zf.write(path, path.relative_to(root).as_posix())
            zf.write(root / "sample_submission.csv", "sample_submission.csv")
    shutil.rmtree(root / "train")
    out = download(tmp_path / "packed", source="local", path=str(root))
    assert_same_manifests(plain, out)


def test_inner_archive_with_path_traversal_is_refused(tmp_path):
    root = imagefolder_competition(tmp_path / "comp")
    zip_in_place(root / "train", root / "train.zip", prefix="train/")
    with zipfile.ZipFile(root / "train.zip", "a") as zf:
        zf.writestr("../evil.txt", "pwned")
    archive = make_zip(root, tmp_path / "comp.zip")
    with pytest.raises(UserError) as err:
        download(tmp_path, source="local", path=str(archive))
    # One line, naming the archives as the user knows them rather than by temporary paths.
    assert str(err.value) == (f"{archive}, inside train.zip: member '../evil.txt' points outside the target "
                              "folder (path traversal); refusing to extract")
    assert not list(tmp_path.rglob("evil.txt")) and not (tmp_path / "raw").exists()


def test_a_failed_run_keeps_the_previous_output(tmp_path):
    root = imagefolder_competition(tmp_path / "comp")
    out = download(tmp_path, source="local", path=str(root))
    before = tree_bytes(out)
    shutil.rmtree(root / "test")
    with pytest.raises(UserError, match="no test/ folder"):
        download(tmp_path, source="local", path=str(root))
    assert tree_bytes(out) == before


@pytest.mark.parametrize("path, message", [
    ("nowhere.zip", r"data.path: '.*nowhere.zip' does not exist"),
    ("not-a-competition", "no sample_submission.csv inside"),
    ("no-labels", "no training labels found next to sample_submission.csv; expected train/<class>/"),
])
def test_unrecognised_local_inputs(tmp_path, path, message):
    (tmp_path / "not-a-competition").mkdir()
    root = imagefolder_competition(tmp_path / "no-labels")
    shutil.rmtree(root / "train")
    with pytest.raises(UserError, match=message):
        download(tmp_path, source="local", path=str(tmp_path / path))


def kaggle_free_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_") and k != "XDG_CONFIG_HOME"}
    return {**env, "HOME": str(home)}


def test_kaggle_without_credentials_fails_with_one_line(tmp_path):
    (tmp_path / "home").mkdir()
    params = write_data_params(tmp_path, source="kaggle", competition="dogs-vs-cats")
    result = subprocess.run(
        [sys.executable, "-m", "workflow.stages.download", "--params", str(params), "--out", str(tmp_path / "raw")],
        cwd=REPO, env=kaggle_free_env(tmp_path / "home"), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and result.stdout == ""
    assert result.stderr.startswith("error: data.source=kaggle needs Kaggle credentials")
    assert "export KAGGLE_API_TOKEN=" in result.stderr and "~/.kaggle/access_token" in result.stderr
    assert not (tmp_path / "raw").exists() and not list((tmp_path / "home").iterdir())


@pytest.fixture
def fake_kaggle_token(tmp_path, monkeypatch):
    for key in [k for k in os.environ if k.startswith("KAGGLE_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KAGGLE_API_TOKEN", "not-a-real-token")


def test_kaggle_download_goes_through_the_local_code(tmp_path, monkeypatch, fake_kaggle_token):
    archive = make_zip(labels_csv_competition(tmp_path / "comp"), tmp_path / "comp.zip")
    calls = []

    def fake_fetch(slug: str, folder: Path) -> None:
        calls.append(slug)
        shutil.copyfile(archive, folder / f"{slug}.zip")

    monkeypatch.setattr(kaggle_source, "fetch_competition_zip", fake_fetch)
    from_kaggle = download(tmp_path / "k", source="kaggle", competition="dog-breeds")
    from_local = download(tmp_path / "l", source="local", path=str(archive))
    assert calls == ["dog-breeds"]
    for name in ("train.csv", "test.csv", "sample_submission.csv"):
        assert (from_kaggle / name).read_bytes() == (from_local / name).read_bytes()
    info = json.loads((from_kaggle / "competition.json").read_text())
    assert info == {**json.loads((from_local / "competition.json").read_text()), "source": "kaggle"}


def http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(response=response)


@pytest.mark.parametrize("error, message", [
    (http_error(403), r"'dog-breeds': Kaggle refused access \(403\); accept the competition's rules"),
    (http_error(404), r"'dog-breeds': no such competition \(404\)"),
    (requests.ConnectionError("down"), r"'dog-breeds': cannot reach Kaggle \(ConnectionError\)"),
    (SystemExit(1), r"'dog-breeds': Kaggle rejected the credentials"),
    (http_error(429), r"'dog-breeds': Kaggle is limiting requests \(429\); wait a few minutes"),
    (http_error(401), r"'dog-breeds': Kaggle rejected the credentials \(401: invalid or expired\)"),
])
def test_kaggle_api_errors_become_one_line(tmp_path, monkeypatch, fake_kaggle_token, error, message):
    def failing_fetch(slug: str, folder: Path) -> None:
        raise error

    monkeypatch.setattr(kaggle_source, "fetch_competition_zip", failing_fetch)
    with pytest.raises(UserError, match="^data.competition " + message):
        download(tmp_path, source="kaggle", competition="dog-breeds")


def test_kaggle_credentials_are_found_where_the_package_looks(tmp_path, monkeypatch):
    for key in [k for k in os.environ if k.startswith("KAGGLE_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert not kaggle_source.credentials_found()
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    assert not kaggle_source.credentials_found()  # a username alone is not enough
    (tmp_path / "xdg" / "kaggle").mkdir(parents=True)
    (tmp_path / "xdg" / "kaggle" / "kaggle.json").write_text('{"key": "x"}')
    assert kaggle_source.credentials_found()
    monkeypatch.delenv("KAGGLE_USERNAME")
    (tmp_path / ".kaggle").mkdir()
    (tmp_path / ".kaggle" / "access_token").write_text("token")
    assert kaggle_source.credentials_found()


def test_stage_does_not_import_torch():
    code = "import sys, workflow.stages.download; assert 'torch' not in sys.modules and 'kaggle' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


# Bad input: images (decoded once by the download stage) and labels/ids. Each message is one line.

def write_bad_images(folder: Path) -> dict[str, str]:
    """A truncated JPEG, a zero-byte file and a non-image, in `folder`; returns name -> reason prefix."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "whole.jpg", quality=90)
    data = (folder / "whole.jpg").read_bytes()
    (folder / "whole.jpg").unlink()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])
    (folder / "empty.jpg").touch()
    (folder / "notes.png").write_text("not an image\n")
    return {"cut.jpg": "cannot be decoded, truncated or corrupt (image file is truncated",
            "empty.jpg": "is an empty file (0 bytes)",
            "notes.png": "is not an image (Pillow recognises no image format in it)"}


def test_bad_training_images_are_skipped_and_reported(tmp_path, monkeypatch):
    root = imagefolder_competition(tmp_path / "comp")
    reasons = {f"files/train/cat/{name}": why for name, why in write_bad_images(root / "train" / "cat").items()}
    Image.new("RGB", (100, 100)).save(root / "train" / "dog" / "huge.png")
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 9_999)  # the 6x5 images pass, the 100x100 one does not
    reasons["files/train/dog/huge.png"] = "is 100x100 = 10,000 pixels, over the decompression-bomb limit of 9,999"

    out = download(tmp_path, source="local", path=str(root), max_bad_fraction=0.5)  # 4 bad of 8
    info = check_consistent(out)
    assert list(read(out, "train.csv")["path"]) == [
        "files/train/cat/a.png", "files/train/cat/b.png", "files/train/dog/c.png", "files/train/dog/d.png"]
    skipped = read(out, "skipped_images.csv")
    assert list(skipped.columns) == ["path", "reason"]
    assert list(skipped["path"]) == sorted(reasons)
    assert all(reason.startswith(reasons[path]) for path, reason in skipped.values)
    assert (info["num_train"], info["num_skipped"]) == (4, 4)


def test_a_clean_competition_has_an_empty_skipped_report(tmp_path):
    out = download(tmp_path, source="local", path=str(imagefolder_competition(tmp_path / "comp")))
    assert (out / "skipped_images.csv").read_text() == "path,reason\n"
    assert check_consistent(out)["num_skipped"] == 0


def test_too_many_bad_training_images_fail_the_run_in_one_line(tmp_path):
    root = imagefolder_competition(tmp_path / "comp")
    (root / "train" / "cat" / "empty.jpg").touch()  # 1 of 5 is 20%, over the default 1%
    params = write_data_params(tmp_path, source="local", path=str(root))
    result = subprocess.run(
        [sys.executable, "-m", "workflow.stages.download", "--params", str(params), "--out", str(tmp_path / "raw")],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "error: 1 of 5 training images (20.0%) cannot be read, more than data.max_bad_fraction=0.01; "
        "the first: train/cat/empty.jpg is an empty file (0 bytes); "
        "replace the files or raise data.max_bad_fraction in params.yaml\n")
    assert not (tmp_path / "raw").exists()


def test_max_bad_fraction_is_a_share_of_the_training_images(tmp_path):
    root = imagefolder_competition(tmp_path / "comp")
    (root / "train" / "cat" / "empty.jpg").touch()
    assert check_consistent(download(tmp_path, source="local", path=str(root), max_bad_fraction=0.2))["num_skipped"] == 1
    with pytest.raises(UserError, match=r"^1 of 5 training images \(20.0%\) cannot be read, more than "
                                         r"data.max_bad_fraction=0.19;"):
        download(tmp_path, source="local", path=str(root), max_bad_fraction=0.19)


def test_a_class_whose_images_are_all_bad_is_an_error(tmp_path):
    root = imagefolder_competition(tmp_path / "comp")
    (root / "train" / "bird").mkdir()
    (root / "train" / "bird" / "x.jpg").touch()
    with pytest.raises(UserError) as err:
        download(tmp_path, source="local", path=str(root), max_bad_fraction=1.0)
    assert str(err.value) == ("class 'bird' has no readable training image left "
                              "(e.g. train/bird/x.jpg is an empty file (0 bytes)); replace its images")


@pytest.mark.parametrize("name", ["cut.jpg", "empty.jpg", "notes.png"])
def test_a_bad_test_image_is_always_an_error(tmp_path, name):
    root = imagefolder_competition(tmp_path / "comp")
    why = write_bad_images(tmp_path / "bad")[name]
    (root / "test" / "010.png").unlink()
    shutil.copyfile(tmp_path / "bad" / name, root / "test" / f"010{Path(name).suffix}")
    with pytest.raises(UserError) as err:
        download(tmp_path, source="local", path=str(root), max_bad_fraction=1.0)
    message = str(err.value)
    assert message.startswith(f"test/010{Path(name).suffix}: the test image for id '010' "
                              f"(sample_submission.csv line 3) {why}")
    assert message.endswith("; the submission needs every id, so replace the file") and "\n" not in message
    assert not (tmp_path / "raw").exists()


def test_a_label_with_no_image_names_the_line(tmp_path):
    root = labels_csv_competition(tmp_path / "comp")
    (root / "train" / "img_2.jpg").unlink()
    with pytest.raises(UserError) as err:
        download(tmp_path, source="local", path=str(root))
    assert str(err.value) == ("train.csv line 4: no image for id 'img_2'; expected a file named 'img_2' "
                              "or 'img_2.<ext>' in the train folder")


def test_an_image_with_no_label_is_skipped_and_reported(tmp_path):
    root = labels_csv_competition(tmp_path / "comp")
    make_image(root / "train" / "img_9.jpg")
    out = download(tmp_path, source="local", path=str(root))  # not bad: the default 1% does not apply
    assert list(read(out, "train.csv")["path"]) == [f"files/train/img_{i}.jpg" for i in (1, 2, 3)]
    assert read(out, "skipped_images.csv").values.tolist() == [
        ["files/train/img_9.jpg", "has no label: no row of train.csv names it"]]


@pytest.mark.parametrize("extra_id, message", [
    ("img_1", "train.csv line 5: id 'img_1' repeats line 3; each image must appear once, so remove the duplicate row"),
    ("img_1.jpg", "train.csv line 5: id 'img_1.jpg' names the same image as id 'img_1' on line 3; "
                  "each image must appear once, so remove the duplicate row"),
])
def test_duplicate_ids_in_the_labels_csv(tmp_path, extra_id, message):
    root = labels_csv_competition(tmp_path / "comp")
    labels = read(root, "train.csv")
    pd.concat([labels, pd.DataFrame({"image": [extra_id], "breed": ["dog"]})]).to_csv(root / "train.csv", index=False)
    with pytest.raises(UserError) as err:
        download(tmp_path, source="local", path=str(root))
    assert str(err.value) == message


def test_duplicate_ids_in_sample_submission(tmp_path):
    root = imagefolder_competition(tmp_path / "comp")
    pd.DataFrame({"id": [*TEST_IDS, "010"], "label": "cat"}).to_csv(root / "sample_submission.csv", index=False)
    with pytest.raises(UserError) as err:
        download(tmp_path, source="local", path=str(root))
    assert str(err.value) == ("sample_submission.csv line 5: id '010' repeats line 3; "
                              "each test id must appear once, so remove the duplicate row")


def test_test_manifest_follows_sample_submission_order_and_column_names(tmp_path):
    root = imagefolder_competition(tmp_path / "comp")
    ids = ["2", "007", "010"]  # neither sorted as strings nor as numbers
    pd.DataFrame({"ImageName": ids, "Category": "dog"}).to_csv(root / "sample_submission.csv", index=False)
    out = download(tmp_path, source="local", path=str(root))
    info = check_consistent(out)
    assert read(out, "test.csv").values.tolist() == [[i, f"files/test/{i}.png"] for i in ids]
    assert (info["id_column"], info["label_column"]) == ("ImageName", "Category")
    assert (out / "sample_submission.csv").read_bytes() == (root / "sample_submission.csv").read_bytes()


def test_kaggle_credentials_never_reach_output_or_files(tmp_path):
    """A real attempt with a token (the network is unreachable here): the token is never echoed."""
    secret = "S3CRET-kaggle-token-0123456789"
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    (home / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": "someone", "key": secret}))
    params = write_data_params(tmp_path, source="kaggle", competition="dogs-vs-cats")
    env = {**kaggle_free_env(home), "KAGGLE_API_TOKEN": secret}
    result = subprocess.run(
        [sys.executable, "-m", "workflow.stages.download", "--params", str(params), "--out", str(tmp_path / "raw")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and result.stderr.startswith("error: data.competition 'dogs-vs-cats'")
    assert secret not in result.stdout + result.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "kaggle.json"]
    assert written and not any(secret.encode() in p.read_bytes() for p in written)
