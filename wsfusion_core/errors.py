"""The few exception types users see.

Each message is one line that names the file and the problem. ``path`` is the file at fault
(or None) and ``hint`` a way out worded for any front end: the core never names CLI flags or
dialog fields (the CLI adds its flags, QGIS its field names)."""

from __future__ import annotations

import functools
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, TypeVar, Union


class WsfusionError(Exception):
    """Base class: anything the CLI prints as one line and exits 1 on."""

    def __init__(self, message: str, *, path: Union[str, os.PathLike] | None = None,
                 hint: str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.hint = hint
        self.message = message
        text = f"{shown(self.path)}: {message}" if self.path is not None else message
        super().__init__(f"{text}; {hint}" if hint else text)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled whole (path, hint, a subclass's own fields): a chunk that fails on a dask
        # worker reaches the client as the same one-line error, not as a wrapped repr.
        return (_restore, (type(self), self.args, dict(self.__dict__)))


def _restore(cls: type[WsfusionError], args: tuple[Any, ...], state: dict[str, Any]
             ) -> WsfusionError:
    obj = cls.__new__(cls)
    Exception.__init__(obj, *args)
    obj.__dict__.update(state)
    return obj


class InputError(WsfusionError):
    """An input raster is missing, unreadable, or incompatible with the others."""


class OutputError(WsfusionError):
    """An output path is unusable (exists, equals an input, unwritable)."""


class WeightsError(WsfusionError):
    """A weights file is missing, malformed, or does not fit the model."""


class Cancelled(WsfusionError):
    """The caller's cancel callable returned True; partial outputs were removed."""


F = TypeVar("F", bound=Callable[..., Any])


def shown(path: Union[str, os.PathLike]) -> str:
    """A path as the user wrote it: ``pathlib.Path`` folds the ``//`` of a remote input's URL
    scheme (``/vsicurl/https:/host``), which is put back here."""
    return re.sub(r"^((?:/vsicurl/)?(?:https?|s3|gs|az)):/(?!/)", r"\1://", str(path))


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text (GDAL's can run to many), else its type's name."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def only_wsfusion_errors(fn: F) -> F:
    """Let only WsfusionError out of a public entry point, so that every caller (CLI, QGIS,
    scripts) can print one line: anything unexpected becomes one that names its type, with the
    original chained for debugging."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except WsfusionError:
            raise
        except MemoryError:
            raise WsfusionError("out of memory", hint="use a smaller batch size, or close "
                                "other programs") from None
        except OSError as exc:
            text = exc.strerror or str(exc)
            raise WsfusionError(text[:1].lower() + text[1:], path=exc.filename) from exc
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            raise WsfusionError(f"unexpected {type(exc).__name__}: {first}",
                                hint="this is a bug, please report it") from exc

    return wrapper  # type: ignore[return-value]


def quiet_warnings(fn: F) -> F:
    """Keep Python warnings (numpy's RuntimeWarnings, rasterio's) off the terminal during a
    public entry point: each distinct one goes to the call's ``log`` callable as one line, or
    is dropped when there is none. rasterio's NotGeoreferencedWarning is dropped always: inputs
    without a CRS are handled (and refused when mixed) by the engine itself."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from rasterio.errors import NotGeoreferencedWarning

        say = kwargs.get("log") or (lambda _msg: None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")  # once per place: a long run records few
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            try:
                return fn(*args, **kwargs)
            finally:
                seen: set[str] = set()
                for w in caught:
                    text = " ".join(str(w.message).split())
                    line = f"warning: {w.category.__name__}: {text}"
                    if line not in seen:
                        seen.add(line)
                        say(line)

    return wrapper  # type: ignore[return-value]
