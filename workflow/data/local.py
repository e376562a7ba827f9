"""Bring a competition given as a zip, a tar or a folder into one folder: its root.

The root is the folder that holds sample_submission.csv; archives often wrap it in one or more
top-level folders (comp/comp/train/...), so it is searched for rather than assumed. Kaggle zips
often hold more archives (train.zip, test1.zip, train.tar.gz, images.zip, sample_submission.csv.zip):
those in the root and one folder down are extracted in place and deleted, so the layout sees folders.
Two of them that hold the same file name with different content are refused: one would silently
overwrite the other. A folder source may not hold links that leave it, nor names that are no UTF-8.
"""
from __future__ import annotations

import filecmp
import os
import shutil
from pathlib import Path

from workflow.core.errors import UserError
from workflow.data.archives import extract_archive, is_utf8, shown_name
from workflow.data.layout import is_sample_submission, visible_files

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def local_source(path: str) -> Path:
    """data.path as an existing zip, tar or folder."""
    source = Path(path).expanduser()
    if not source.exists():
        raise UserError(f"data.path: '{path}' does not exist; set data.path in params.yaml "
                        "to the competition's zip, tar or folder")
    return source


def archive_stem(path: Path) -> str | None:
    """The name without its archive suffix (train.tar.gz -> train), or None for a file that is no archive."""
    suffix = next((s for s in ARCHIVE_SUFFIXES if path.name.lower().endswith(s)), None)
    return path.name[: -len(suffix)] if suffix else None


def _visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name != "__MACOSX"  # macOS zip debris (._x.zip) too


def find_root(folder: Path, source: Path) -> Path:
    """The shallowest folder under `folder` holding sample_submission.csv (`source` names it in errors)."""
    # Kaggle sometimes zips it on its own: sample_submission.csv.zip; unpack_inner_archives opens it.
    hits = [path for path in visible_files(folder)
            if is_sample_submission(path.name) or is_sample_submission(archive_stem(path) or "")]
    if not hits:
        raise UserError(f"{source}: no sample_submission.csv inside; expected a Kaggle competition "
                        "(sample_submission.csv next to train/ or a labels CSV, and test/)")
    return min(hits, key=lambda path: (len(path.parts), str(path))).parent


def unpack(source: Path, files: Path, scratch: Path) -> None:
    """Put the competition root found in `source` (folder or archive) at `files`; `scratch` is temporary space."""
    if source.is_dir():
        root = find_root(source, source)
        check_folder(root, source)
        shutil.copytree(root, files)
    else:
        extracted = scratch / "extracted"
        extract_archive(source, extracted)
        # Same filesystem as `files`, so moving the root is a rename, not a second copy.
        os.replace(find_root(extracted, source), files)
    unpack_inner_archives(files, scratch, source)


def check_folder(root: Path, source: Path) -> None:
    """Refuse what copying `root` would get wrong: a link leaving `source` (it would copy an outside
    file into data/raw and the DVC cache), a dangling link, a name that is no UTF-8."""
    inside = source.resolve()
    for folder, dirs, names in os.walk(root):
        for name in sorted(dirs + names):
            path = Path(folder, name)
            shown = shown_name(str(path.relative_to(source)))
            if not is_utf8(name):
                raise UserError(f"{source}: file name '{shown}' is not valid UTF-8; rename the file")
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(inside):
                    raise UserError(f"{source}: {shown} is a symbolic link to {target}, outside {source}; links that "
                                    "leave the competition folder are refused: copy the file in or remove the link")
                if not target.exists():
                    raise UserError(f"{source}: {shown} is a symbolic link to {target}, which does not exist; "
                                    "remove the link")


def unpack_inner_archives(root: Path, scratch: Path, source: Path) -> None:
    """Extract the archives in `root`, then those one folder down (some came out of the first), in place."""
    origin: dict[Path, str] = {}  # each file an inner archive placed -> that archive, to name both in a clash
    for archive in _archives_in(root):
        _unpack_inner(archive, root, scratch, source, origin)
    for folder in sorted(path for path in root.iterdir() if path.is_dir() and _visible(path)):
        for archive in _archives_in(folder):
            _unpack_inner(archive, root, scratch, source, origin)


def _archives_in(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_file() and _visible(path) and archive_stem(path))


def _unpack_inner(archive: Path, root: Path, scratch: Path, source: Path, origin: dict[Path, str]) -> None:
    tmp = scratch / "inner"
    try:
        extract_archive(archive, tmp)
    except UserError as err:
        # Name the archive as the user knows it, not by its temporary path.
        reason = str(err).removeprefix(f"{archive}: ")
        raise UserError(f"{source}, inside {archive.relative_to(root)}: {reason}") from None
    entries = sorted(path for path in tmp.iterdir() if _visible(path))
    # Loose files get a folder named after the archive (train.zip of images -> train/). Folders
    # (train.zip -> train/, imgs.zip -> train/ and test/) and the one file an archive like
    # train.csv.zip wraps go next to the archive, so there is no train/train/.
    stem = archive_stem(archive)
    loose = all(path.is_file() for path in entries) and [path.name for path in entries] != [stem]
    dest = archive.parent / stem if loose else archive.parent
    dest.mkdir(exist_ok=True)
    name = archive.relative_to(root).as_posix()
    for entry in entries:
        _merge(entry, dest / entry.name, name, root, source, origin)
    shutil.rmtree(tmp)
    archive.unlink()  # data/raw would otherwise hold every image twice


def _merge(src: Path, dest: Path, archive: str, root: Path, source: Path, origin: dict[Path, str]) -> None:
    """Move `src` to `dest`, merging into a folder already there (train_1.zip and train_2.zip -> train/).

    A file already at `dest` is never overwritten: the same bytes are kept once, other bytes are an error.
    """
    if src.is_dir() and dest.is_dir():
        for child in sorted(src.iterdir()):
            _merge(child, dest / child.name, archive, root, source, origin)
    elif not (dest.exists() or dest.is_symlink()):
        os.replace(src, dest)
        for path in [dest, *dest.rglob("*")]:
            origin[path] = archive
    elif src.is_file() and dest.is_file() and filecmp.cmp(src, dest, shallow=False):
        src.unlink()
    else:
        first = origin.get(dest, "the competition folder")
        raise UserError(f"{source}: {first} and {archive} both hold '{dest.relative_to(root).as_posix()}' with "
                        "different content; unpacking both would overwrite one with the other. Rename the files in "
                        "one archive, or unpack them into separate folders yourself and set data.path to that folder")
