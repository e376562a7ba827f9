"""Fault injection: bad inputs and broken environments, each run through a stage as a real process.

Each row of FAULTS is one case: a builder that puts the fault into a copy of a prepared project (a
bad archive, a misspelled params key, a damaged cache, a read-only or full folder), the stage to
run, a fragment of the one-line error it must print, and the paths that must be byte-identical
afterwards (previous outputs, inputs). For every row the harness also checks: exit code 2, one line
on stderr starting with 'error: ' and nothing else there but progress bars (no traceback, no
warnings), no temporary files left behind.

To add a case, write its builder (a function of the Workspace) and add one line to FAULTS. Rows
that run train or infer are marked slow (each run imports torch); .ci/run runs them all.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import yaml
from helpers import REPO, write_params
from PIL import Image
from test_download import imagefolder_competition, make_zip
from test_stages import FILES, INPUTS, OUTS, run_stages


@dataclass
class Workspace:
    """A private copy of the prepared project: params.yaml and every stage's inputs and outputs."""

    root: Path
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def set_params(self, **dotted) -> None:
        """Change params.yaml keys given as 'section.key' (or 'section.key.sub')."""
        path = self.root / "params.yaml"
        params = yaml.safe_load(path.read_text())
        for key, value in dotted.items():
            *parents, name = key.split(".")
            node = params
            for part in parents:
                node = node[part]
            node[name] = value
        path.write_text(yaml.safe_dump(params, sort_keys=False))

    def local_source(self, path: Path) -> None:
        self.set_params(**{"data.source": "local", "data.path": str(path)})


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Workspace], None]  # puts the fault into the workspace
    stage: str  # the stage module that runs (workflow/stages/<stage>.py)
    message: str | tuple[str, ...]  # a fragment of the one error line (or several, all in it)
    unchanged: tuple[str, ...]  # paths, relative to the workspace, that must not change (or stay absent)
    options: dict[str, str] = field(default_factory=dict)  # stage path options moved elsewhere in the workspace


# ---------------------------------------------------------------------------------------------------------------
# Builders: archives (download stage)
# ---------------------------------------------------------------------------------------------------------------

def competition(ws: Workspace) -> Path:
    """A small valid competition folder (ImageFolder layout) inside the workspace."""
    return imagefolder_competition(ws.root / "comp")


def tar_of_competition(ws: Workspace, name: str = "comp.tar", mode: str = "w") -> tuple[Path, tarfile.TarFile]:
    archive = ws.root / name
    tf = tarfile.open(archive, mode)
    tf.add(competition(ws), arcname="comp")
    return archive, tf


def hard_link(name: str, target: str) -> tarfile.TarInfo:
    link = tarfile.TarInfo(name)
    link.type, link.linkname = tarfile.LNKTYPE, target
    return link


def tar_hard_link_outside(ws: Workspace) -> None:
    archive, tf = tar_of_competition(ws)
    with tf:
        # A hard link's target is relative to the archive root: this one leaves the target folder.
        tf.addfile(hard_link("comp/train/cat/z.png", "../outside.png"))
    ws.local_source(archive)


def tar_hard_link_to_a_missing_member(ws: Workspace) -> None:
    archive, tf = tar_of_competition(ws)
    with tf:
        tf.addfile(hard_link("comp/train/cat/z.png", "comp/train/cat/missing.png"))
    ws.local_source(archive)


def zip_with_bad_crc(ws: Workspace) -> None:
    archive = ws.root / "comp.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in sorted(competition(ws).rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(ws.root / "comp").as_posix())
        victim = zf.getinfo("train/dog/c.png")
    data = bytearray(archive.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[victim.header_offset + 26:victim.header_offset + 30])
    start = victim.header_offset + 30 + name_len + extra_len
    data[start + victim.file_size // 2] ^= 0xFF  # one flipped byte in the stored image: the CRC no longer matches
    archive.write_bytes(bytes(data))
    ws.local_source(archive)


def truncated_tar_gz(ws: Workspace) -> None:
    archive, tf = tar_of_competition(ws, "comp.tar.gz", "w:gz")
    tf.close()
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) * 2 // 3])  # a download cut short
    ws.local_source(archive)


def _zipcrypto(data: bytes, password: bytes, check: int) -> bytes:
    """Traditional PKWARE encryption (what `zip -e` writes): a 12-byte header, then the data."""
    keys = [0x12345678, 0x23456789, 0x34567890]

    def crc(ch: int, value: int) -> int:  # the format's one-byte CRC step, through zlib's conditioning
        return zlib.crc32(bytes([ch]), value ^ 0xFFFFFFFF) ^ 0xFFFFFFFF

    def update(ch: int) -> None:
        keys[0] = crc(ch, keys[0])
        keys[1] = ((keys[1] + (keys[0] & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        keys[2] = crc(keys[1] >> 24, keys[2])

    for ch in password:
        update(ch)
    out = bytearray()
    for ch in bytes(11) + bytes([check]) + data:
        k = keys[2] | 2
        out.append(ch ^ ((k * (k ^ 1)) >> 8) & 0xFF)
        update(ch)
    return bytes(out)


def encrypted_zip(archive: Path, files: dict[str, bytes], password: bytes) -> Path:
    """A zip whose members are encrypted with `password` (stored, ZipCrypto)."""
    local, central = bytearray(), bytearray()
    for name, data in files.items():
        crc = zlib.crc32(data)
        payload = _zipcrypto(data, password, crc >> 24)
        encoded = name.encode()
        header = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 1, 0, 0, 0, crc, len(payload), len(data),
                             len(encoded), 0)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 1, 0, 0, 0, crc, len(payload), len(data),
                               len(encoded), 0, 0, 0, 0, 0, len(local)) + encoded
        local += header + encoded + payload
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(files), len(files), len(central), len(local), 0)
    archive.write_bytes(bytes(local + central + end))
    return archive


def zip_with_a_password(ws: Workspace) -> None:
    comp = competition(ws)
    files = {path.relative_to(comp).as_posix(): path.read_bytes() for path in sorted(comp.rglob("*")) if path.is_file()}
    archive = encrypted_zip(ws.root / "comp.zip", files, b"secret")
    with zipfile.ZipFile(archive) as zf:  # really encrypted: readable with the password only
        assert zf.read("sample_submission.csv", pwd=b"secret") == files["sample_submission.csv"]
    ws.local_source(archive)


def tar_member_name_not_utf8(ws: Workspace) -> None:
    archive, tf = tar_of_competition(ws)
    with tf:
        image = ws.root / "comp/train/cat/a.png"
        # Latin-1 bytes (as an old Windows tool writes them): 0xE9 alone is no UTF-8.
        info = tf.gettarinfo(image, arcname=b"comp/train/cat/caf\xe9.png".decode("utf-8", "surrogateescape"))
        with image.open("rb") as fh:
            tf.addfile(info, fh)
    ws.local_source(archive)


def two_inner_zips_with_the_same_members(ws: Workspace) -> None:
    comp = competition(ws)
    for part, shade in (("train_1.zip", 10), ("train_2.zip", 200)):
        with zipfile.ZipFile(comp / part, "w") as zf:
            for i in range(20):  # the same 20 names in both, different images
                path = ws.root / "img.png"
                Image.new("RGB", (6, 5), (shade, i, 0)).save(path)
                zf.write(path, f"train/cat/{i:03d}.png")
    ws.local_source(comp)


def folder_with_a_link_outside(ws: Workspace) -> None:
    comp = competition(ws)
    secret = ws.root / "outside" / "secret.png"
    secret.parent.mkdir()
    shutil.copy(comp / "train/cat/a.png", secret)
    (comp / "train/cat/z.png").symlink_to(secret)
    ws.local_source(comp)


# ---------------------------------------------------------------------------------------------------------------
# Builders: augmentation, models, caches
# ---------------------------------------------------------------------------------------------------------------

RESIZED_CROP = {"RandomResizedCrop": {"scale": [0.8, 1.0]}}


def misspelled_transform_argument(ws: Workspace) -> None:
    ws.set_params(**{"augment.train": [RESIZED_CROP, {"HorizontalFlip": {"pp": 0.5}}]})


def crop_larger_than_the_cache(ws: Workspace) -> None:
    ws.set_params(**{"augment.train": [{"RandomCrop": {"height": 64, "width": 64}}], "cache.image_size": 32})


def crop_larger_than_the_cache_at_train_time(ws: Workspace) -> None:
    """pipelines.json from a time the crop fitted (the cache was since rebuilt smaller)."""
    from workflow.config import load_params
    from workflow.data.transforms import build_pipelines, save_pipelines
    from workflow.stages.augment import resolve_normalize

    ws.set_params(**{"augment.train": [{"RandomCrop": {"height": 40, "width": 40}}]})
    params = load_params(ws.root / "params.yaml")
    normalize = resolve_normalize(params.augment, params.model)
    (ws.root / "pipelines.json").write_text(save_pipelines(build_pipelines(params.augment, normalize),
                                                           params.augment.image_size, normalize))


def model_config(ws: Workspace, name: str, text: str) -> None:
    (ws.root / name).write_text(text)
    ws.set_params(**{"model.name": str(ws.root / name)})


def model_config_not_json(ws: Workspace) -> None:
    model_config(ws, "broken.json", '{"model_type": "beit", "hidden_size": 64,\n  "num_hidden_layers": 4\n')


def model_config_of_a_text_model(ws: Workspace) -> None:
    model_config(ws, "bert.json", json.dumps({"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 2,
                                              "num_attention_heads": 2, "intermediate_size": 128}))


def hub_model_folder_of_a_text_model(ws: Workspace) -> None:
    """A folder in the hub layout (config.json): loaded as a hub id is, through from_pretrained."""
    folder = ws.root / "bert-base"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 64}))
    ws.set_params(**{"model.name": str(folder)})


def cache_bytes_changed(ws: Workspace) -> None:
    array = ws.root / "cache/images.npy"
    data = bytearray(array.read_bytes())
    data[-100] ^= 0x01  # one pixel of the last image, one grey level: nothing else tells
    array.write_bytes(bytes(data))


def cache_truncated(ws: Workspace) -> None:
    array = ws.root / "cache/images.npy"
    array.write_bytes(array.read_bytes()[:-4096])


# ---------------------------------------------------------------------------------------------------------------
# Builders: file systems (real mounts: a read-only bind mount, a small tmpfs)
# ---------------------------------------------------------------------------------------------------------------

def _mount(ws: Workspace, *args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount here ({result.stderr.strip()}); this case needs root and mount")


def _unmount(folder: Path) -> None:
    # Lazily when busy (a process that outlived a failed case still holds a file there): never leak a mount.
    if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def read_only(ws: Workspace, folder: Path) -> None:
    """Make `folder` unwritable, content kept: a read-only bind mount as root (root ignores file
    modes), chmod otherwise."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        ws.cleanups.append(lambda: folder.chmod(0o755))
        return
    _mount(ws, "--bind", str(folder), str(folder))
    ws.cleanups.append(lambda: _unmount(folder))
    _mount(ws, "-o", "remount,bind,ro", str(folder))


def small_disk(ws: Workspace, folder: Path, size: str) -> None:
    """A tmpfs of `size` at `folder` (root only); `previous` in it stands for an earlier output."""
    if os.geteuid() != 0:
        pytest.skip("a small file system is mounted as root; run as root to test a full disk")
    folder.mkdir(parents=True, exist_ok=True)
    _mount(ws, "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder))
    ws.cleanups.append(lambda: _unmount(folder))


def reports_read_only(ws: Workspace) -> None:
    reports = ws.root / "reports"
    (reports / "train").mkdir(parents=True)
    for earlier in ("preview.png", "val_predictions.csv"):  # earlier outputs there, when the project has them
        if (ws.root / earlier).is_file():
            shutil.copy(ws.root / earlier, reports / earlier)
    read_only(ws, reports)


def full_disk(size: str, previous: str) -> Callable[[Workspace], None]:
    """A `size` tmpfs at small/, holding a small earlier output at small/<previous>."""
    def build(ws: Workspace) -> None:
        small_disk(ws, ws.root / "small", size)
        (ws.root / "small" / previous).mkdir()
        (ws.root / "small" / previous / "earlier-output.txt").write_text("the previous run's output\n")
    return build


# ---------------------------------------------------------------------------------------------------------------
# Builders: cases handled before issue 12, collected here
# ---------------------------------------------------------------------------------------------------------------

def zip_with_path_traversal(ws: Workspace) -> None:
    archive = make_zip(competition(ws), ws.root / "comp.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("../evil.txt", "pwned")
    ws.local_source(archive)


def zip_with_a_symbolic_link(ws: Workspace) -> None:
    archive = make_zip(competition(ws), ws.root / "comp.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        link = zipfile.ZipInfo("train/cat/z.png")
        link.external_attr = 0o120777 << 16  # a symbolic link, as `zip --symlinks` stores it
        zf.writestr(link, "/etc/passwd")
    ws.local_source(archive)


def tar_with_an_absolute_path(ws: Workspace) -> None:
    archive, tf = tar_of_competition(ws)
    with tf:
        tf.addfile(tarfile.TarInfo("/tmp/evil.txt"))
    ws.local_source(archive)


def not_an_archive(ws: Workspace) -> None:
    (ws.root / "notes.txt").write_text("not a competition\n")
    ws.local_source(ws.root / "notes.txt")


def truncated_test_image(ws: Workspace) -> None:
    comp = competition(ws)
    image = comp / "test" / "010.png"
    image.write_bytes(image.read_bytes()[:40])
    ws.local_source(comp)


def unknown_params_key(ws: Workspace) -> None:
    ws.set_params(**{"lora.rr": 16})


def params_not_yaml(ws: Workspace) -> None:
    (ws.root / "params.yaml").write_text("split:\n  seed: [1\n")


def unknown_transform(ws: Workspace) -> None:
    ws.set_params(**{"augment.train": [{"RandomCrap": {}}]})


def validation_fraction_too_large(ws: Workspace) -> None:
    ws.set_params(**{"split.val_fraction": 0.995})


def adapter_of_another_backbone(ws: Workspace) -> None:
    meta = ws.root / "adapter/model_meta.json"
    meta.write_text(meta.read_text().replace('"backbone_sha256": "', '"backbone_sha256": "0'))


def cache_of_other_images(ws: Workspace) -> None:
    test = ws.root / "raw/test.csv"
    test.write_text("".join(test.read_text().splitlines(keepends=True)[:-1]))


def no_cache(ws: Workspace) -> None:
    shutil.rmtree(ws.root / "cache")


def more_folds_than_any_class_has_rows(ws: Workspace) -> None:
    ws.set_params(**{"split.folds": list(range(200))})  # the digits have about 150 rows per class


def no_competition_record(ws: Workspace) -> None:
    (ws.root / "raw/competition.json").unlink()


# ---------------------------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------------------------

FAULTS = [
    Case("tar hard link outside the target", tar_hard_link_outside, "download",
         "member 'comp/train/cat/z.png' is a hard link to '../outside.png', outside the target folder", ("raw",)),
    Case("tar hard link to a missing member", tar_hard_link_to_a_missing_member, "download",
         "member 'comp/train/cat/z.png' is a hard link to 'comp/train/cat/missing.png', which the archive does not hold",
         ("raw",)),
    Case("zip with a bad CRC", zip_with_bad_crc, "download", "member 'train/dog/c.png' is damaged (Bad CRC-32",
         ("raw",)),
    Case("truncated tar.gz", truncated_tar_gz, "download", "comp.tar.gz: the archive is truncated or damaged", ("raw",)),
    Case("zip with a password", zip_with_a_password, "download", "is encrypted", ("raw",)),
    Case("tar member name not UTF-8", tar_member_name_not_utf8, "download",
         r"member name 'comp/train/cat/caf\xe9.png' is not valid UTF-8", ("raw",)),
    Case("two inner zips with the same members", two_inner_zips_with_the_same_members, "download",
         "train_1.zip and train_2.zip both hold 'train/cat/000.png'", ("raw", "comp")),
    Case("local folder with a link outside it", folder_with_a_link_outside, "download",
         "train/cat/z.png is a symbolic link to", ("raw",)),
    Case("misspelled albumentations argument", misspelled_transform_argument, "augment",
         "augment.train[1]: HorizontalFlip has no argument 'pp' (valid: p)", ("pipelines.json", "preview.png")),
    Case("crop larger than the cache", crop_larger_than_the_cache, "augment",
         "augment.train[0]: RandomCrop cannot run on the cached images, 32x32 pixels", ("pipelines.json", "preview.png")),
    Case("crop larger than the cache, at train time", crop_larger_than_the_cache_at_train_time, "train",
         "augment.train[0]: RandomCrop cannot run on the cached images, 32x32 pixels", ("adapter", "val_predictions.csv")),
    Case("model config not valid JSON", model_config_not_json, "train", "broken.json: not valid JSON (",
         ("adapter", "live", "val_predictions.csv")),
    Case("model config of a text model", model_config_of_a_text_model, "train",
         "bert.json: model_type 'bert' is not an image-classification model, which this image task needs; use one of: beit,",
         ("adapter", "live", "val_predictions.csv")),
    Case("hub model folder of a text model", hub_model_folder_of_a_text_model, "train",
         "bert-base': model_type 'bert' is not an image-classification model", ("adapter", "live")),
    Case("cache bytes changed", cache_bytes_changed, "infer", "its content differs from the sha256 recorded",
         ("predictions.csv", "cache")),
    Case("cache truncated", cache_truncated, "infer", "the cache is truncated or damaged; rebuild it",
         ("predictions.csv", "cache")),
    Case("read-only reports folder, augment", reports_read_only, "augment",
         ("error: cannot write ", "/reports/preview.png: ", "reports writable or write the output elsewhere"),
         ("pipelines.json", "reports"), options={"preview": "reports/preview.png"}),
    Case("read-only reports folder, train", reports_read_only, "train",
         ("error: cannot write ", "/reports/val_predictions.csv: ", "reports writable or write the output elsewhere"),
         ("adapter", "reports"), options={"live": "reports/train", "predictions": "reports/val_predictions.csv",
                                          "run-record": "reports/train/run.json"}),
    Case("full disk, cache", full_disk("2m", "cache"), "cache",
         ("no space left on the device while writing ", "/small/cache (needs 5.3 MiB, "),
         ("small/cache",), options={"out": "small/cache"}),
    Case("full disk, download", full_disk("1m", "raw"), "download",
         ("no space left on the device while writing ", "/small/raw ("),
         ("small/raw",), options={"out": "small/raw"}),
    Case("full disk, train checkpoint", full_disk("64k", "checkpoint"), "train",
         ("no space left on the device while writing ", "/small/checkpoint/state.pt ("),
         ("small/checkpoint", "adapter", "val_predictions.csv"), options={"checkpoint": "small/checkpoint"}),
    # Handled before issue 12.
    Case("zip with path traversal", zip_with_path_traversal, "download",
         "member '../evil.txt' points outside the target folder (path traversal)", ("raw",)),
    Case("zip with a symbolic link", zip_with_a_symbolic_link, "download",
         "member 'train/cat/z.png' is a symbolic link; refusing to extract", ("raw",)),
    Case("tar with an absolute path", tar_with_an_absolute_path, "download",
         "member '/tmp/evil.txt' has an absolute path", ("raw",)),
    Case("not an archive", not_an_archive, "download", "notes.txt: not a zip or tar archive", ("raw",)),
    Case("truncated test image", truncated_test_image, "download",
         "test/010.png: the test image for id '010' (sample_submission.csv line 3)", ("raw",)),
    Case("unknown params key", unknown_params_key, "split", "lora.rr: unknown key; did you mean lora.r? (allowed here: targets, r, alpha",
         ("split",)),
    Case("params not YAML", params_not_yaml, "split", "params.yaml: line 3: not valid YAML", ("split",)),
    Case("unknown transform", unknown_transform, "augment",
         "augment.train[0]: 'RandomCrap' is not an albumentations transform", ("pipelines.json", "preview.png")),
    Case("validation fraction too large", validation_fraction_too_large, "split",
         "split.val_fraction: 0.995 leaves", ("split",)),
    Case("adapter of another backbone", adapter_of_another_backbone, "infer",
         "differs from the one the adapter was trained on", ("predictions.csv",)),
    Case("cache of other images", cache_of_other_images, "infer", "the image cache was built from other images",
         ("predictions.csv",)),
    Case("more folds than any class has rows", more_folds_than_any_class_has_rows, "kfold",
         "split.folds: 200 folds, but no class has 200 rows (the largest has ", ("folds",)),
    Case("raw folder without competition.json", no_competition_record, "cache",
         ("/raw/competition.json: missing;", "run `dvc repro download`"), ("cache",)),
    Case("no cache", no_cache, "train", "no image cache here; build it with the cache stage",
         ("adapter", "live", "val_predictions.csv")),
]


# ---------------------------------------------------------------------------------------------------------------
# The harness
# ---------------------------------------------------------------------------------------------------------------

MODEL_STAGES = ("train", "infer")  # they import torch and transformers: seconds per run, so marked slow


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A project with the data stages' outputs: the builtin competition, split, pipelines, cache."""
    folder = tmp_path_factory.mktemp("faults-project")
    os.chdir(REPO)  # model.name is relative to the repository root, as in dvc.yaml
    params = write_params(folder, {"train.epochs": 1, "train.device": "cpu", "infer.device": "cpu"})
    run_stages(folder, params, "download", "split", "augment", "cache")
    return folder


@pytest.fixture(scope="module")
def trained(prepared) -> Path:
    """The same project with one epoch of training and its predictions too."""
    run_stages(prepared, prepared / "params.yaml", "train", "infer")
    return prepared


def snapshot(path: Path):
    """Bytes of a file, {relative path: bytes} of a folder, None when absent."""
    if path.is_symlink() or path.is_file():
        return path.read_bytes()
    if path.is_dir():
        return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    return None


PROGRESS = re.compile(r"^[\w ]+: +\d+%\|")  # tqdm's bars on stderr ("train:  42%|...", redrawn after \r)


def stage_command(ws: Workspace, case: Case) -> list[str]:
    paths = {"out": OUTS[case.stage], **{name: FILES[name] for name in INPUTS[case.stage]}, **case.options}
    argv = ["--params", str(ws.root / "params.yaml")]
    for name, relative in paths.items():
        argv += [f"--{name}", str(ws.root / relative)]
    return [sys.executable, "-m", f"workflow.stages.{case.stage}", *argv]


@pytest.mark.parametrize("case", [
    pytest.param(case, id=case.name, marks=[pytest.mark.slow] if case.stage in MODEL_STAGES else [])
    for case in FAULTS
])
def test_fault_is_one_line_and_changes_nothing(case, request, tmp_path):
    project = request.getfixturevalue("trained" if case.stage in MODEL_STAGES else "prepared")
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(project, ws.root, symlinks=True)
    try:
        case.build(ws)
        before = {name: snapshot(ws.root / name) for name in case.unchanged}
        result = subprocess.run(stage_command(ws, case), cwd=REPO, capture_output=True, text=True, timeout=300)
        lines = [line for line in re.split(r"[\r\n]+", result.stderr) if line.strip() and not PROGRESS.match(line)]
        assert result.returncode == 2, result.stderr[-3000:]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
        fragments = (case.message,) if isinstance(case.message, str) else case.message
        assert all(fragment in lines[0] for fragment in fragments), lines[0]
        for name, content in before.items():
            assert snapshot(ws.root / name) == content, f"{name} changed"
        assert not [p for p in ws.root.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name]
    finally:
        for cleanup in reversed(ws.cleanups):
            cleanup()
