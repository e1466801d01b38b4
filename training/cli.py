"""Command lines: ``wsfusion-train`` (the recipe) and ``wsfusion-evaluate`` (tables, figures,
and optionally the shipped weights' metadata)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from .train import DEFAULT_DATA


def train_main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["real-pairs"]:  # the real-cloud recipe (issues 18/24)
        from .train_real import main as real_pairs

        return real_pairs(argv[1:])
    from .train import main

    return main(argv)


def evaluate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wsfusion-evaluate",
        description="Tables 1-2 and Figures 4-6 on the held-out test tile with held-out clouds. "
        "'wsfusion-evaluate real-clouds --help': the real-cloud validation instead.")
    p.add_argument("--weights", required=True, help="our learned-fusion model (.safetensors)")
    p.add_argument("--baseline", help="mean-fusion baseline trained with the same recipe")
    p.add_argument("--clean", help="clean upper bound (segmentation net on clean images)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="the shared data folder")
    p.add_argument("--out", default="docs/results", help="folder for results.json, tables, PNGs")
    p.add_argument("--crops", type=int, default=16, help="test crops from the test tile")
    p.add_argument("--crop", type=int, default=256, help="crop size in pixels")
    p.add_argument("--draws", type=int, default=10, help="artifact draws for Tables 1-2")
    p.add_argument("--figure-draws", type=int, default=3, help="draws per point of Figs 4-5")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ship", action="store_true",
                   help="also write --weights with the measured numbers as the shipped default")
    p.add_argument("--status", default="final", help="status recorded when shipping")
    return p


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["real-clouds"]:  # real clouds through the real fuse path
        from .realclouds import main as real_clouds

        return real_clouds(argv[1:])
    args = evaluate_parser().parse_args(argv)
    from wsfusion_core.errors import WsfusionError

    from .evaluate import EvalConfig, headline_metrics, run

    cfg = EvalConfig(data=args.data, out=args.out, crops=args.crops, crop=args.crop,
                     draws=args.draws, figure_draws=args.figure_draws, threads=args.threads)
    try:
        results = run(cfg, args.weights, args.baseline, args.clean,
                      log=lambda m: print(m, file=sys.stderr, flush=True))
        if args.ship:
            from .ship import ship

            path = ship(args.weights, status=args.status, metrics=headline_metrics(results))
            print(f"shipped {path}", file=sys.stderr)
    except WsfusionError as exc:
        print(f"wsfusion-evaluate: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(results["targets"], indent=1))
    print((Path(args.out) / "tables.md").read_text())
    return 0
