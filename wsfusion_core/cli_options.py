"""The CLI's shared pieces, as rasterio keeps them in ``rio/options.py``: option callbacks that
parse with the core's own rules, the options several commands share, the progress bar and the
signal handling that turns Ctrl-C, SIGTERM and SIGHUP into a clean cancel."""

from __future__ import annotations

import os
import signal
import sys
from contextlib import suppress
from typing import Any

import click

from .options import DEVICES, parse_bands

_STATE: dict[str, Any] = {"debug": bool(os.environ.get("WSFUSION_DEBUG")), "signal": None}


def _set_debug(_ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        _STATE["debug"] = True
    return value


def _parse_bands(_ctx: click.Context, _param: click.Parameter,
                 value: str | None) -> tuple[int, ...] | None:
    try:
        return parse_bands(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _parse_scale(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str:
    from .errors import WsfusionError
    from .view import parse_scale

    try:
        return parse_scale(value).text
    except WsfusionError as exc:
        raise click.BadParameter(str(exc)) from None


def _parse_remote(_ctx: click.Context, _param: click.Parameter,
                  value: tuple[str, ...]) -> tuple[str, ...]:
    from .errors import WsfusionError
    from .remote import patterns

    try:
        return patterns(value)
    except WsfusionError as exc:
        raise click.BadParameter(str(exc)) from None


allow_remote_option = click.option(
    "--allow-remote", "allow_remote", multiple=True, callback=_parse_remote, metavar="PATTERN",
    help="Read remote inputs (http(s)/s3/gs/az URLs, /vsicurl/, /vsis3/, ...) and remote VRT "
    "sources from this host or bucket: host, *.host, host:port, s3://bucket, or * for any. "
    "Repeatable. Default: local files only. Allowing a host also trusts where it redirects.")
allow_large_option = click.option(
    "--allow-large", is_flag=True,
    help="Run even when the output grid is more than 10x the area where the inputs hold data "
    "(and over 67 Mpx), or would not fit the free disk space at 2:1 compression; both are "
    "refused by default.")
scale_option = click.option("--scale", callback=_parse_scale, default="auto", show_default=True,
                            metavar="RULE", help="One radiometric scale for all inputs as the "
                            "networks see them: auto, s2, landsat-c2, reflectance, LO,HI, a "
                            "divisor, or per-input (old rule).")
def _parse_evidence(_ctx: click.Context, _param: click.Parameter,
                    value: str | None) -> str | tuple[int, ...]:
    from .errors import WsfusionError
    from .evidence import parse_evidence

    try:
        return parse_evidence(value)
    except WsfusionError as exc:
        raise click.BadParameter(str(exc)) from None


evidence_option = click.option(
    "--evidence-bands", "evidence_bands", callback=_parse_evidence, default="auto",
    show_default=True, metavar="auto|none|B,B,...",
    help="Bands only the quality net reads as evidence of cloud (Sentinel-2 cirrus, SWIR, "
    "aerosol). auto: where every input is a recognised Sentinel-2 / Landsat stack and a shipped "
    "model covers it, use that model and its bands (and default --bands to true colour); none: "
    "the RGB model; B,B,...: 1-based band numbers in the model's order. Only the weights "
    "change; every band is fused.")
debug_option = click.option("--debug", is_flag=True, expose_value=False, is_eager=True,
                            callback=_set_debug, help="Show tracebacks on errors.")
device_option = click.option("--device", type=click.Choice(list(DEVICES)),
                             default="auto", show_default=True,
                             help="Where the networks run (auto: CUDA if available).")


class _Progress:
    """A tqdm bar on stderr fed by the engine's fraction callback; log lines go above it."""

    def __init__(self, quiet: bool, desc: str) -> None:
        self.quiet = quiet
        self.desc = desc
        self.bar: Any = None

    def log(self, msg: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(msg, file=sys.stderr)
        else:
            click.echo(msg, err=True)

    def update(self, fraction: float) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=1000, desc=self.desc, file=sys.stderr, unit="‰", leave=True,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]",
                            dynamic_ncols=True, mininterval=0.2)
        n = int(round(max(0.0, min(1.0, fraction)) * 1000))
        if n > self.bar.n:
            self.bar.update(n - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class _Stop:
    """Ctrl-C, SIGTERM (timeout, systemd, batch schedulers) and SIGHUP (a closed terminal) all
    set a flag the engine polls between batches: it then removes its temp files and raises
    Cancelled, and the exit code is 128 + the signal number. A second signal interrupts at
    once (the outputs' clean-up still runs)."""

    SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP")
                    if hasattr(signal, n))

    def __init__(self) -> None:
        self.flag = False
        self._old: dict[int, Any] = {}

    def __call__(self) -> bool:
        return self.flag

    def _handler(self, signum: int, _frame: Any) -> None:
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True
        _STATE["signal"] = signum
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        with suppress(OSError):
            click.echo(f"\n{name}: stopping after the current batch (again to abort now)",
                       err=True)

    def __enter__(self) -> _Stop:
        for sig in self.SIGNALS:
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread (embedded): rely on KeyboardInterrupt
                pass
        return self

    def __exit__(self, *_exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
