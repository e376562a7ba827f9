"""Safe extraction of the zips and tars a competition comes in: every refusal is one line naming the
archive and the member.

Refused before anything is extracted: absolute paths and '..', symbolic links in zips, links that
leave the target folder, hard links to members the archive does not hold, encrypted members, and
member names that are not UTF-8 (they could not be written to the manifests). A damaged archive (a
bad CRC, a download cut short, corrupt compressed data) is reported as such, with the member where
the library names it, and the advice to download it again.
"""
from __future__ import annotations

import gzip
import lzma
import os
import tarfile
import zipfile
import zlib
from pathlib import Path

from workflow.core.errors import UserError

ZIP_ENCRYPTED = 0x1  # general purpose flag bit 0 of a zip member: its data is encrypted


def shown_name(name: str) -> str:
    """A file name for a message: bytes that are no UTF-8 (kept by Python as surrogates) as \\xNN."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_name(name: str, target: Path, archive: Path) -> None:
    if not is_utf8(name):
        raise UserError(f"{archive}: member name '{shown_name(name)}' is not valid UTF-8; re-create the archive "
                        "with UTF-8 file names (rename the file)")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UserError(f"{archive}: member '{name}' has an absolute path; refusing to extract this archive")
    if not _inside(name, target):
        raise UserError(f"{archive}: member '{name}' points outside the target folder (path traversal); refusing to extract")


def _inside(relative: str, target: Path) -> bool:
    return not os.path.isabs(relative) and (target / relative).resolve().is_relative_to(target.resolve())


def _is_damage(err: Exception) -> bool:
    """An exception a decompressor or archive reader raises for bad data (not an OS failure such as ENOSPC)."""
    if isinstance(err, (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)):
        return True
    return isinstance(err, OSError) and err.errno is None  # bz2's "Invalid data stream"


def _damaged(archive: Path, err: Exception, member: str | None = None) -> UserError:
    detail = (str(err).strip().splitlines() or [type(err).__name__])[0]
    where = f"member '{member}' is damaged" if member else "the archive is truncated or damaged"
    return UserError(f"{archive}: {where} ({detail}); download it again or re-create it")


def extract_archive(archive: Path | str, target: Path | str) -> None:
    """Extract a zip or tar into `target`, or raise UserError saying which member is refused and why."""
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        _extract_zip(archive, target)
    elif tarfile.is_tarfile(archive):
        _extract_tar(archive, target)
    else:
        raise UserError(f"{archive}: not a zip or tar archive; give a .zip, a .tar(.gz) or a folder")


def _extract_zip(archive: Path, target: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:
                _check_name(info.filename, target, archive)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise UserError(f"{archive}: member '{info.filename}' is a symbolic link; refusing to extract")
                if info.flag_bits & ZIP_ENCRYPTED:
                    raise UserError(f"{archive}: member '{info.filename}' is encrypted (the zip has a password); "
                                    "extract it with its password and set data.path to the folder")
            for info in members:
                try:
                    zf.extract(info, target)
                except NotImplementedError as err:  # e.g. Deflate64, which Python's zipfile cannot read
                    raise UserError(f"{archive}: member '{info.filename}' uses a compression method that cannot be "
                                    f"read here ({err}); re-create the zip with standard deflate") from None
                except (zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, OSError) as err:
                    if not _is_damage(err):
                        raise
                    raise _damaged(archive, err, info.filename) from None
    except zipfile.BadZipFile as err:  # the central directory itself
        raise _damaged(archive, err) from None


def _extract_tar(archive: Path, target: Path) -> None:
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()  # reads the whole archive: a truncated one fails here
            earlier: set[str] = set()
            for member in members:
                _check_name(member.name, target, archive)
                if member.issym():
                    _check_link(member, os.path.join(os.path.dirname(member.name), member.linkname), target, archive)
                if member.islnk():  # a hard link names another member, from the archive's root
                    _check_link(member, member.linkname, target, archive)
                    if os.path.normpath(member.linkname) not in earlier:
                        raise UserError(f"{archive}: member '{member.name}' is a hard link to '{member.linkname}', "
                                        "which the archive does not hold before it; the archive is incomplete or "
                                        "damaged: download it again or re-create it")
                earlier.add(os.path.normpath(member.name))
            # The 'data' filter also strips setuid bits and refuses devices.
            tf.extractall(target, filter="data")
    except tarfile.FilterError as err:
        raise UserError(f"{archive}: member '{err.tarinfo.name}' is refused by safe extraction ({err}); "
                        "refusing to extract") from None
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as err:
        if not _is_damage(err):
            raise
        raise _damaged(archive, err) from None


def _check_link(member: tarfile.TarInfo, resolved: str, target: Path, archive: Path) -> None:
    kind = "symbolic" if member.issym() else "hard"
    if not is_utf8(member.linkname):
        raise UserError(f"{archive}: member '{member.name}' links to a name that is not valid UTF-8 "
                        f"('{shown_name(member.linkname)}'); re-create the archive with UTF-8 file names")
    if not _inside(resolved, target):
        raise UserError(f"{archive}: member '{member.name}' is a {kind} link to '{member.linkname}', outside the "
                        "target folder; refusing to extract")
