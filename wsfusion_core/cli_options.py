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


def _parse_numbers(ctx: click.Context, param: click.Parameter,
                   value: str | None) -> tuple[int, ...] | None:
    from .masks import parse_numbers

    if value is None:
        return None
    try:
        return parse_numbers(value, "class values" if param.name == "mask_values" else
                             "bit numbers")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def mask_options(f: Any) -> Any:
    """The sensor-mask options shared by ``fuse`` and ``info`` (masks.py)."""
    from .masks import PRESETS

    for opt in reversed([
        click.option("--mask", "mask_preset", type=click.Choice(list(PRESETS)), default=None,
                     help="Sensor-mask preset: s2-scl (Sentinel-2 L2A SCL classes 0,1,3,8,9,"
                     "10, STAC asset 'scl') or landsat-qa (Landsat C2 QA_PIXEL bits 0-4: fill, "
                     "dilated cloud, cirrus, cloud, shadow; STAC asset 'qa_pixel')."),
        click.option("--mask-values", callback=_parse_numbers, default=None, metavar="V,V,..",
                     help="Mask class values that make a pixel invalid (e.g. 3,8,9,10)."),
        click.option("--mask-bits", callback=_parse_numbers, default=None, metavar="B,B,..",
                     help="Mask bit numbers (0 = lowest); a pixel with any of them set is "
                     "invalid (e.g. 0,1,3,4)."),
        click.option("--mask-file", "mask_files", multiple=True, metavar="PATH",
                     help="A mask raster per input, in input order (repeat; 'none' for an "
                     "input without one); any grid: read nearest-neighbour onto the "
                     "reference, nothing masked outside its footprint."),
    ]):
        f = opt(f)
    return f


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
    """Progress on stderr fed by the engine's fraction callback, never cut by a log line.

    On a terminal: a tqdm bar, and log lines (``log``, the ``logging`` module, Python warnings)
    are written above it through ``tqdm.write``. Anywhere else (``make demo | tee``, CI logs,
    a scheduler's log file) a redrawn bar would leave carriage returns and half bars in the
    text, so the bar is printed as whole lines instead: at the start, at every further 10 %
    (at most one line per ``LINE_SECONDS``) and at the end, between the log lines."""

    LINE_SECONDS = 5.0
    FORMAT = "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]"

    def __init__(self, quiet: bool, desc: str, stream: Any = None) -> None:
        self.quiet = quiet
        self.desc = desc
        self.stream = stream if stream is not None else sys.stderr
        self.bar: Any = None
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._redirect: Any = None
        self._old_showwarning: Any = None
        self._started = 0.0
        self._printed: tuple[int, float] | None = None  # (per mille, time) of the last line
        self._n = 0

    def log(self, msg: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(msg, file=self.stream)
        else:
            click.echo(msg, file=self.stream)

    def update(self, fraction: float) -> None:
        if self.quiet:
            return
        n = int(round(max(0.0, min(1.0, fraction)) * 1000))
        if self.tty:
            self._update_bar(n)
        else:
            self._update_lines(n)

    def _update_bar(self, n: int) -> None:
        if self.bar is None:
            import logging
            import warnings

            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            self.bar = tqdm(total=1000, desc=self.desc, file=self.stream, unit="‰", leave=True,
                            bar_format=self.FORMAT, dynamic_ncols=True, mininterval=0.2)
            self._redirect = logging_redirect_tqdm([logging.root])
            self._redirect.__enter__()
            self._old_showwarning = warnings.showwarning
            bar, stream = self.bar, self.stream

            def show(message: Any, category: Any, filename: str, lineno: int,
                     file: Any = None, line: str | None = None) -> None:
                text = warnings.formatwarning(message, category, filename, lineno, line)
                bar.write(text.rstrip("\n"), file=stream)

            warnings.showwarning = show
        if n > self.bar.n:
            self.bar.update(n - self.bar.n)

    def _update_lines(self, n: int) -> None:
        import time

        now = time.monotonic()
        if self._printed is None:
            self._started = now
        self._n = max(self._n, n)
        last = self._printed
        if last is None or (self._n // 100 > last[0] // 100
                            and now - last[1] >= self.LINE_SECONDS):
            self._line(now)

    def _line(self, now: float) -> None:
        from tqdm import tqdm

        text = tqdm.format_meter(self._n, 1000, now - self._started, ncols=60, ascii=True,
                                 prefix=self.desc, bar_format=self.FORMAT)
        click.echo(text, file=self.stream)
        self._printed = (self._n, now)

    def close(self) -> None:
        if self.bar is not None:
            import warnings

            self.bar.close()
            self.bar = None
            self._redirect.__exit__(None, None, None)
            warnings.showwarning = self._old_showwarning
        elif self._printed is not None and self._printed[0] != self._n:
            import time

            self._line(time.monotonic())  # the final state, once


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
