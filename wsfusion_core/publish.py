"""Putting finished files in place, all together or not at all.

Every output is first written to a temporary file in its target folder (same file system, so a
rename publishes it atomically). Temporary names carry the program, the PID and a host tag,
``.wsfusion-<pid>-<host>-<n>.<kind>.tif``, and not the target's name, so they fit any target name
the file system accepts; a later run removes those of its host whose PID is gone (a run killed
with SIGKILL cannot clean up after itself).

``publish_all`` moves every file into place. Without ``overwrite`` a target that exists at that
moment is never replaced (``renameat2(RENAME_NOREPLACE)``, or an exclusive hard link, not a check
at start-up); with it, each replaced file is first kept as a hard link (or renamed aside). If any
step fails, the outputs already moved are taken back and the replaced files restored.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import itertools
import os
import re
import socket
import stat
from contextlib import suppress
from pathlib import Path
from typing import Sequence

from .errors import OutputError

PROGRAM = "wsfusion"
OVERWRITE_HINT = "allow overwriting to replace it"
HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_COUNTER = itertools.count()
# What temp_path makes, and nothing else: kind, suffix and GDAL's side file are spelled out, so
# that a user's file that only begins like one (``.wsfusion-1-abcdef-0.notes``) is never removed.
TEMP_KINDS = ("tmp", "cog", "old")
TEMP_SUFFIXES = (".tif", ".png", ".safetensors", ".gpkg")  # .gpkg: vectors.VectorWriter
_TEMP = re.compile(rf"^\.{PROGRAM}-(\d+)-([0-9a-f]{{6}})-\d+\.({'|'.join(TEMP_KINDS)})"
                   rf"({'|'.join(re.escape(s) for s in TEMP_SUFFIXES)})(\.aux\.xml)?$")
_RENAME_NOREPLACE = 1
_AT_FDCWD = -100
# Errors of link()/renameat2() that mean "this file system cannot", not "this file exists".
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.EPERM, errno.ENOTSUP, errno.EXDEV,
                errno.EMLINK, errno.EOPNOTSUPP}


def temp_path(target: str | os.PathLike, kind: str = "tmp", suffix: str = ".tif") -> Path:
    """A fresh temporary name beside ``target`` (``kind``: tmp, cog, old, ...)."""
    if kind not in TEMP_KINDS or suffix not in TEMP_SUFFIXES:
        raise ValueError(f"temp_path: kind {kind!r} / suffix {suffix!r} not in the pattern "
                         "remove_stale knows")
    target = Path(target)
    return target.with_name(f".{PROGRAM}-{os.getpid()}-{HOST}-{next(_COUNTER)}.{kind}{suffix}")


def is_temp_name(name: str) -> bool:
    return _TEMP.match(name) is not None


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except OSError:
        return True
    return True


def remove_stale(folder: str | os.PathLike) -> list[Path]:
    """Remove this host's temporary files in ``folder`` whose process is gone; returns them.
    Files of other hosts (a shared network folder) are left alone: their PIDs mean nothing here.
    Backups of replaced outputs (``.old.``) are kept: a run killed while publishing on a file
    system without hard links may have left the previous output only there."""
    removed: list[Path] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = _TEMP.match(name)
        if m is None or m.group(2) != HOST or pid_alive(int(m.group(1))) or m.group(3) == "old":
            continue  # an ".old" file may be the only copy of a replaced output: kept
        p = Path(folder) / name
        with suppress(OSError):
            if stat.S_ISREG(os.lstat(p).st_mode):
                p.unlink()
                removed.append(p)
    return removed


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):  # not glibc >= 2.28, or not Linux
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return libc


_LIBC = _libc()


def rename_noreplace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Move ``src`` to ``dst``; FileExistsError if ``dst`` exists at that instant.

    renameat2(RENAME_NOREPLACE) where the kernel and file system have it; else an exclusive hard
    link then unlink; else (no hard links, e.g. some FUSE or SMB mounts) an exclusively created
    placeholder replaced by ``src``: the name is still taken atomically."""
    s, d = os.fsencode(src), os.fsencode(dst)
    if _LIBC is not None:
        if _LIBC.renameat2(_AT_FDCWD, s, _AT_FDCWD, d, _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in _UNSUPPORTED:
            raise OSError(err, os.strerror(err), os.fsdecode(d))
    try:
        os.link(s, d)
    except OSError as exc:
        if exc.errno not in _UNSUPPORTED:
            raise
        fd = os.open(d, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(fd)
        os.replace(s, d)
        return
    os.unlink(s)


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a closed file to the device: errors a cache would hide (quota, NFS) show here."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make renames in ``folder`` durable; silently skipped where folders cannot be synced."""
    with suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class _Move:
    """One output moved into place, and how to take it back."""

    def __init__(self, staged: Path, target: Path) -> None:
        self.staged, self.target = staged, target
        st = os.stat(staged)
        self.ident = (st.st_dev, st.st_ino)
        self.backup: Path | None = None
        self.done = False

    def run(self, overwrite: bool) -> None:
        if overwrite and os.path.lexists(self.target):
            self.backup = temp_path(self.target, "old")
            try:
                # The target is never missing; a symlink is kept as the link itself.
                os.link(self.target, self.backup, follow_symlinks=False)
            except OSError:
                os.rename(self.target, self.backup)
            os.replace(self.staged, self.target)
        else:
            try:
                rename_noreplace(self.staged, self.target)
            except FileExistsError:
                raise OutputError("a file appeared there while this run was working; it was "
                                  "kept and nothing was published", path=self.target,
                                  hint=OVERWRITE_HINT) from None
        self.done = True

    def undo(self) -> str | None:
        """Put things back as they were; a sentence if that was impossible."""
        try:
            if self.done and self.backup is not None:
                os.replace(self.backup, self.target)
            elif self.backup is not None and not os.path.lexists(self.target):
                os.rename(self.backup, self.target)  # renamed aside, new one never arrived
            elif self.done:
                st = os.lstat(self.target)
                if (st.st_dev, st.st_ino) == self.ident:
                    os.unlink(self.target)
            return None
        except OSError as exc:
            kept = f" (the previous file is kept as {self.backup})" if self.backup else ""
            return f"{self.target}: could not be restored: {describe_oserror(exc)}{kept}"

    def forget_backup(self) -> None:
        if self.backup is not None:
            with suppress(OSError):
                os.unlink(self.backup)


def publish_all(pairs: Sequence[tuple[Path, Path]], overwrite: bool) -> None:
    """Move each staged file onto its target, all or nothing (see the module docstring)."""
    moves: list[_Move] = []
    try:
        for staged, target in pairs:
            m = _Move(Path(staged), Path(target))
            moves.append(m)
            m.run(overwrite)
    except BaseException as exc:
        problems = [p for p in (m.undo() for m in reversed(moves)) if p]
        if isinstance(exc, OutputError) and not problems:
            raise
        if isinstance(exc, OSError):
            target = moves[-1].target if moves else Path(pairs[0][1])
            msg = f"cannot be put in place: {describe_oserror(exc)}"
            msg += "; no output was published" if not problems else "; " + "; ".join(problems)
            raise OutputError(msg, path=target) from None
        if problems:
            raise OutputError("; ".join(problems)) from exc
        raise
    for m in moves:
        m.forget_backup()
    for folder in {m.target.parent for m in moves}:
        fsync_dir(folder)


def describe_oserror(exc: OSError) -> str:
    """``[Errno 13] Permission denied: 'x'`` → ``permission denied``."""
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def free_mb(folder: str | os.PathLike) -> float | None:
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize / 2**20


__all__ = ["OVERWRITE_HINT", "describe_oserror", "free_mb", "fsync_dir", "fsync_file",
           "is_temp_name", "publish_all", "remove_stale", "rename_noreplace", "temp_path"]
