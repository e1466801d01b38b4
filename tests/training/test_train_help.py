"""Issue 21 item 4: ``wsfusion-train --help`` explains every flag (what, unit, default)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

from training.train import TrainConfig, build_parser
from training.train_flags import FLAG_HELP

REPO = Path(__file__).resolve().parents[2]


def test_every_flag_has_help_with_its_default():
    parser = build_parser()
    flags = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert len(flags) == len(fields(TrainConfig)) + 2  # every field, --config, --resume
    for action in flags:
        text = action.help or ""
        what = text.split("(default:")[0].strip()
        assert len(what) >= 15, f"{action.option_strings[0]}: help {text!r} says too little"
        if action.dest not in ("config", "resume"):
            assert "(default: " in text, action.option_strings[0]
    # no help text left for a field that is gone (a renamed flag would silently lose its help)
    assert set(FLAG_HELP) == {f.name for f in fields(TrainConfig)}


def test_help_defaults_are_the_config_defaults():
    parser = build_parser()
    by_dest = {a.dest: a.help or "" for a in parser._actions}
    d = TrainConfig()
    assert "(default: 20)" in by_dest["epochs"] and d.epochs == 20
    assert f"(default: {d.lr})" in by_dest["lr"]
    assert "(default: 2 3 4 5 6)" in by_dest["k"]
    assert "(default: off)" in by_dest["banepa"]


def test_wsfusion_train_help_runs():
    """The real entry point prints the help (argparse's '%' formatting would crash on a bare
    percent sign in a help text) and exits 0."""
    res = subprocess.run([sys.executable, "-c", "import sys; from training.cli import "
                          "train_main; sys.exit(train_main(['--help']))"],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "usage: wsfusion-train" in out and "docs/training.md" in out
    for f in fields(TrainConfig):
        assert "--" + f.name.replace("_", "-") in out
    assert "+-15 %" in out  # a percent sign survives formatting
