"""GDAL's error messages: kept off the terminal, recorded, and turned into one short cause.

GDAL prints failures it cannot hand to its caller (``_tiffWriteProc: No space left on device``)
straight to stderr and goes on; rasterio then reports success, or an error that names neither the
file nor the cause. ``capture()`` pushes a GDAL error handler for the calling thread (GDAL keeps
the handler stack per thread, so QGIS's own handler elsewhere is untouched) that records every
message instead of printing it; writers check the record after each write, close and copy.
Where the GDAL library cannot be found the context still works, it only records nothing (the
read-back check after closing then catches a broken file).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

CE_WARNING, CE_FAILURE, CE_FATAL = 2, 3, 4

# Phrases of strerror() (and of libtiff) → the cause as users should read it.
_CAUSES = (
    ("no space left on device", "no space left on device"),
    ("disk quota exceeded", "disk quota exceeded"),
    ("file too large", "file too large for this file system"),
    ("read-only file system", "the file system is read-only"),
    ("permission denied", "permission denied"),
    ("input/output error", "input/output error (a failing disk or a lost network mount)"),
    ("stale file handle", "the network file system dropped the file (stale file handle)"),
)


@dataclass(frozen=True)
class GdalMessage:
    level: int
    errno: int
    text: str


MAX_WARNINGS = 200  # per capture: a warning per block of a large raster would pile up


class Recorder:
    """The messages recorded in one ``capture()``; ``failures_since(mark)`` for one step."""

    def __init__(self) -> None:
        self.messages: list[GdalMessage] = []
        self.warnings = 0

    def add(self, message: GdalMessage) -> None:
        if message.level < CE_FAILURE:
            self.warnings += 1
            if self.warnings > MAX_WARNINGS:
                return
        self.messages.append(message)

    def mark(self) -> int:
        return len(self.messages)

    def failures_since(self, mark: int = 0) -> list[GdalMessage]:
        return [m for m in self.messages[mark:] if m.level >= CE_FAILURE]


_HANDLER_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, ctypes.c_char_p)
# libtiff's handler: (module, printf format, va_list); a va_list argument is passed as a pointer
# on the 64-bit Linux ABIs (x86-64: an array type; AArch64: a large struct, by reference).
_TIFF_HANDLER_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p)
_LOCK = threading.Lock()
_LIBS: dict[str, ctypes.CDLL | None] = {}
_ACTIVE = threading.local()  # .recorders: this thread's open captures, innermost last
_TIFF_STATE: dict = {}


def _loaded(name: str) -> ctypes.CDLL | None:
    """The shared library ``name`` as rasterio loaded it (inside QGIS a second copy, QGIS's own,
    may be loaded too: prefer the one beside rasterio's wheel)."""
    with _LOCK:
        if name not in _LIBS:
            lib = None
            try:
                import rasterio

                libs = os.path.dirname(os.path.dirname(rasterio.__file__))
                with open("/proc/self/maps") as f:
                    paths = {ln.split()[-1] for ln in f if f"/{name}" in ln}
                ours = sorted(p for p in paths if p.startswith(libs)) or sorted(paths)
                lib = ctypes.CDLL(ours[0]) if ours else None
            except OSError:  # no /proc (not Linux)
                lib = None
            _LIBS[name] = lib
        return _LIBS[name]


def _gdal() -> ctypes.CDLL | None:
    lib = _loaded("libgdal")
    try:
        if lib is not None:
            lib.CPLPushErrorHandlerEx.argtypes = [_HANDLER_TYPE, ctypes.c_void_p]
            lib.CPLPopErrorHandler.argtypes = []
            lib.CPLError.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                     ctypes.c_char_p]
            lib.CPLError.restype = None
    except AttributeError:
        return None
    return lib


def _tiff_handler(level: int) -> Callable[[bytes | None, bytes | None, int | None], None]:
    def handler(module: bytes | None, fmt: bytes | None, ap: int | None) -> None:
        recs = getattr(_ACTIVE, "recorders", None)
        if not recs:  # not ours (another thread, or no capture open): what libtiff did before
            prev = _TIFF_STATE.get(("prev", level))
            if prev:
                prev(module, fmt, ap)
            return
        buf = ctypes.create_string_buffer(1024)
        libc = _TIFF_STATE["libc"]
        libc.vsnprintf(buf, len(buf), fmt, ctypes.c_void_p(ap))
        text = buf.value.decode("utf-8", "replace")
        if module:
            text = f"{module.decode('utf-8', 'replace')}: {text}"
        recs[-1].add(GdalMessage(level, 0, text))
        gdal = _gdal()
        if gdal is not None:
            # Also hand it to GDAL, as GDAL's own libtiff handler would: that sets GDAL's error
            # state, so rasterio can raise (our CPL handler skips it: recorded already).
            _ACTIVE.forwarding = True
            try:
                gdal.CPLError(level, 1, b"%s", text.encode("utf-8", "replace"))
            finally:
                _ACTIVE.forwarding = False

    return handler


def _install_tiff_handlers() -> None:
    """libtiff reports some I/O errors (``_tiffWriteProc: No space left on device``) through its
    process-wide handler, which GDAL built against libtiff >= 4.5 leaves at "print to stderr":
    replace it once, for every thread; threads without a capture keep the old behaviour."""
    with _LOCK:
        if _TIFF_STATE:
            return
        _TIFF_STATE["done"] = True
    lib = _loaded("libtiff")
    if lib is None:
        return
    try:
        libc = ctypes.CDLL(None)
        libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                   ctypes.c_void_p]
        _TIFF_STATE["libc"] = libc
        for level, setter in ((CE_FAILURE, lib.TIFFSetErrorHandler),
                              (CE_WARNING, lib.TIFFSetWarningHandler)):
            setter.restype = ctypes.c_void_p
            setter.argtypes = [_TIFF_HANDLER_TYPE]
            cb = _TIFF_HANDLER_TYPE(_tiff_handler(level))
            old = setter(cb)
            _TIFF_STATE[("cb", level)] = cb  # keep the callback alive
            _TIFF_STATE[("prev", level)] = _TIFF_HANDLER_TYPE(old) if old else None
            _TIFF_STATE[("setter", level)] = setter
        atexit.register(_restore_tiff_handlers)
    except (AttributeError, OSError):
        return


def _restore_tiff_handlers() -> None:
    # At interpreter exit the Python callbacks must no longer be reachable from C.
    for level in (CE_FAILURE, CE_WARNING):
        setter = _TIFF_STATE.get(("setter", level))
        if setter is not None:
            prev = _TIFF_STATE.get(("prev", level))
            setter(prev)  # None: libtiff's own default


@contextmanager
def capture() -> Iterator[Recorder]:
    """Record GDAL messages of this thread instead of printing them; nests."""
    rec = Recorder()

    def handler(level: int, errno: int, msg: bytes | None) -> None:
        if getattr(_ACTIVE, "forwarding", False):
            return
        text = (msg or b"").decode("utf-8", "replace").strip()
        rec.add(GdalMessage(int(level), int(errno), text))

    _install_tiff_handlers()
    lib = _gdal()
    cb = _HANDLER_TYPE(handler)
    if lib is not None:
        lib.CPLPushErrorHandlerEx(cb, None)
    stack = getattr(_ACTIVE, "recorders", None)
    if stack is None:
        stack = _ACTIVE.recorders = []
    stack.append(rec)
    try:
        yield rec
    finally:
        stack.remove(rec)
        if lib is not None:
            lib.CPLPopErrorHandler()
        del cb


def current() -> Recorder | None:
    """The innermost ``capture()`` open in this thread, if any."""
    recs = getattr(_ACTIVE, "recorders", None)
    return recs[-1] if recs else None


def cause(texts: list[str] | str) -> str:
    """The user's words for what went wrong, from GDAL or OS messages: the first known errno
    phrase wins; otherwise the first message itself."""
    items = [texts] if isinstance(texts, str) else list(texts)
    for t in items:
        low = t.lower()
        for phrase, words in _CAUSES:
            if phrase in low:
                return words
    first = next((t for t in items if t.strip()), "unknown error")
    return " ".join(first.split())


__all__ = ["CE_FAILURE", "CE_WARNING", "GdalMessage", "Recorder", "capture", "cause", "current"]
