"""The few exception types users see.

Each message is one line that names the file and the problem."""

from __future__ import annotations


class WsfusionError(Exception):
    """Base class: anything the CLI prints as one line and exits 1 on."""


class InputError(WsfusionError):
    """An input raster is missing, unreadable, or incompatible with the others."""


class OutputError(WsfusionError):
    """An output path is unusable (exists, equals an input, unwritable)."""


class WeightsError(WsfusionError):
    """A weights file is missing, malformed, or does not fit the model."""


class Cancelled(WsfusionError):
    """The caller's cancel callable returned True; partial outputs were removed."""
