"""Issue 21 item 5: log lines never break the progress bar.

A real ``wsfusion-raster fuse`` subprocess, once with stderr on a pseudo-terminal (what a user
sees: rendered by a small terminal model that honours carriage returns and cursor-up) and once
with stderr on a pipe (``make demo | tee``, CI logs): every log line comes out whole, never glued
to a bar, and a pipe gets no carriage returns at all."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
BAR = re.compile(r"^fusing: +\d+%\|.*\| \[")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100"}


def _command(tmp_path: Path, make_raster) -> list[str]:
    rng = np.random.default_rng(0)
    ins = [make_raster(tmp_path / f"in{i}.tif", rng.integers(1, 255, (3, 400, 400), np.uint8),
                       nodata=0) for i in range(3)]
    return [sys.executable, "-m", "wsfusion_core.cli", "fuse", *map(str, ins), "-o",
            str(tmp_path / "fused.tif"), "--method", "median"]


def _render(raw: str) -> list[str]:
    """The screen lines a terminal shows for ``raw``: ``\\r`` returns to column 0 (later text
    overwrites), ``\\n`` and ESC[A move down / up, other escape sequences are ignored."""
    lines: list[list[str]] = [[]]
    row = col = 0
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\x1b":
            m = re.match(r"\x1b\[(\d*)([A-Za-z])", raw[i:])
            if m:
                if m.group(2) == "A":
                    row = max(0, row - int(m.group(1) or 1))
                i += m.end()
                continue
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row += 1
            col = 0
            while len(lines) <= row:
                lines.append([])
        else:
            line = lines[row]
            while len(line) < col:
                line.append(" ")
            if col < len(line):
                line[col] = ch
            else:
                line.append(ch)
            col += 1
        i += 1
    return ["".join(ln).rstrip() for ln in lines]


def _check_lines(lines: list[str]) -> None:
    logs = [ln for ln in lines if ln.startswith(("grid:", "input ", "plan:", "done:"))]
    assert any(ln.startswith("done:") for ln in logs), lines  # a log line written under the bar
    assert len(logs) == 6, lines  # grid, 3 inputs, plan, done
    for ln in lines:
        if "%|" in ln:
            assert BAR.match(ln), ln  # a bar alone on its line
        else:
            assert "%|" not in ln
    for ln in logs:
        assert "%|" not in ln and not re.search(r"\d+%", ln.split(":", 1)[0]), ln


def test_log_lines_above_the_bar_on_a_terminal(tmp_path, make_raster):
    cmd = _command(tmp_path, make_raster)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave, env=_env(),
                            cwd=REPO)
    os.close(slave)
    raw = b""
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            proc.kill()
            pytest.fail("no output for 120 s")
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        raw += chunk
    out = proc.stdout.read().decode() if proc.stdout else ""
    assert proc.wait(timeout=60) == 0, raw.decode(errors="replace")
    os.close(master)
    text = raw.decode()
    assert "\r" in text  # a real bar was drawn (redrawn in place)
    screen = [ln for ln in _render(text) if ln]
    _check_lines(screen)
    assert screen[-1].startswith("fusing: 100%"), screen
    assert "fused:" in out


def test_whole_lines_on_a_pipe(tmp_path, make_raster):
    res = subprocess.run(_command(tmp_path, make_raster), capture_output=True, timeout=300,
                         env=_env(), cwd=REPO)  # bytes: text mode would turn \r into \n
    err = res.stderr.decode()
    assert res.returncode == 0, err
    assert "\r" not in err and "\x1b" not in err  # no redrawing in a log file
    lines = err.split("\n")
    assert lines[-1] == ""  # ends with a whole line
    lines = lines[:-1]
    assert "" not in lines  # no blank line left where a bar was wiped
    _check_lines(lines)
    bars = [ln for ln in lines if "%|" in ln]
    assert bars[0].startswith("fusing:   0%") and bars[-1].startswith("fusing: 100%"), bars
    assert "fused:" in res.stdout.decode()
