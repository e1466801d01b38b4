"""Choose among many weights files (e.g. every epoch of several runs) on the real-cloud
validation, the criterion the shipped model is chosen by (docs/realclouds.md): the mean share
of the mean→oracle L1 gap captured over all cases at ``--scale auto``, then the lower cloud
leakage. Synthetic validation mIoU did not track real-cloud quality, so the training runs keep
every epoch (``--keep-epochs``) and are chosen here instead.

    python -m training.select_real --weights runs/*/epochs/*.safetensors --jobs 2 --out sel

Every file goes through ``wsfusion_core.fuse`` exactly as in ``wsfusion-evaluate real-clouds``
(training/realclouds.py), spread over ``--jobs`` processes, each with its own copy of the cases.
Writes ``OUT/select.json`` (every file's numbers) and ``OUT/select.md`` (the ranked table).
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np

SCALE = "auto"  # the rule users get


def _one_thread() -> None:
    """A pool process uses one core (the runner reads OMP_NUM_THREADS)."""
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _evaluate(args: tuple[str, list[str], str, str]) -> dict[str, Any]:
    """Build the cases in their own folder, fuse and score a share of the files."""
    root, files, work, device = args
    from .realclouds import all_cases, run

    cases = all_cases(Path(root), Path(work))
    res = run(Path(root), files, Path(work), [SCALE], device, log=lambda m: None, cases=cases)
    return res["scales"][SCALE]["per_case"]


def scores(per_case: dict[str, dict[str, dict[str, float]]], label: str) -> dict[str, float]:
    """The selection numbers of one method over the cases: gap (all, S2, Landsat), leakage,
    overcast weight, and the number of cases where it beats both median and min-blue."""
    out: dict[str, float] = {}
    for src in ("all", "s2", "landsat"):
        rows = [c[label] for name, c in per_case.items() if src == "all" or name.startswith(src)]
        for key in ("gap", "leak", "overcast"):
            vals = [r[key] for r in rows if key in r and np.isfinite(r[key])]
            out[f"{src}_{key}"] = float(np.mean(vals)) if vals else float("nan")
    out["beats_both"] = float(sum(c[label]["l1"] < min(c["median"]["l1"], c["min-blue"]["l1"])
                                  for c in per_case.values()))
    return out


def rank(files: Sequence[str], root: Path, work: Path, jobs: int = 1,
         device: str = "cpu") -> list[dict[str, Any]]:
    """Every file's numbers, best first (gap over all cases, then lower leakage)."""
    from .realclouds import weights_label

    files = list(files)
    labels = [weights_label(f) for f in files]
    if len(set(labels)) != len(labels):
        raise ValueError("two weights files share a label; give them distinct names or folders")
    jobs = max(1, min(jobs, len(files)))
    shares = [files[i::jobs] for i in range(jobs)]
    tasks = [(str(root), s, str(work / f"job{i}"), device) for i, s in enumerate(shares)]
    per_case: dict[str, dict[str, dict[str, float]]] = {}
    if jobs == 1:
        parts = [_evaluate(tasks[0])]
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"),
                                 initializer=_one_thread) as ex:
            parts = list(ex.map(_evaluate, tasks))
    for part in parts:
        for case, methods in part.items():
            per_case.setdefault(case, {}).update(methods)
    rows = [{"weights": f, "label": lab, **scores(per_case, f"ours:{lab}")}
            for f, lab in zip(files, labels)]
    for m in ("median", "min-blue"):
        rows.append({"weights": "", "label": m, **scores(per_case, m)})
    rows.sort(key=criterion)
    return rows


def criterion(row: dict[str, Any]) -> tuple[float, float]:
    """Sort key, best first: the mean gap over all cases, then the lower leakage (NaN last)."""
    return (-float(np.nan_to_num(row["all_gap"], nan=-9)),
            float(np.nan_to_num(row["all_leak"], nan=np.inf)))


def soup(files: Sequence[str | Path], path: Path, extra: dict[str, Any] | None = None,
         write_card: bool = False) -> Path:
    """The element-wise mean of several checkpoints of one run (a "model soup"): one epoch's
    real-cloud score is noisy, the mean of the best few is smoother. Integer buffers (BN's
    batch counter) are taken from the first file."""
    import dataclasses

    from wsfusion_core.weights import load_weights, save_weights

    models = [load_weights(f)[0] for f in files]
    model, info = load_weights(files[0])
    states = [m.state_dict() for m in models]
    mean = {k: (sum(s[k] for s in states) / len(states)) if v.is_floating_point() else v
            for k, v in states[0].items()}
    model.load_state_dict(mean)
    prov = dict(info.provenance, soup_of=[str(f) for f in files],
                selected_epoch=f"mean of {', '.join(Path(f).stem for f in files)}")
    prov.update(extra or {})
    return save_weights(path, model, dataclasses.replace(info, provenance=prov),
                        write_card=write_card)


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    def f(v: float, pct: bool = False) -> str:
        return "–" if not np.isfinite(v) else (f"{100 * v:.0f} %" if pct else f"{v:.3f}")

    out = [f"| weights (`--scale {SCALE}`) | gap, all | S2 gap | S2 leak | S2 overcast | "
           "Landsat gap | Landsat leak | beats median & min-blue |", "|" + "---|" * 8]
    for r in rows:
        out.append(f"| {r['label']} | {f(r['all_gap'], True)} | {f(r['s2_gap'], True)} | "
                   f"{f(r['s2_leak'])} | {f(r['s2_overcast'])} | {f(r['landsat_gap'], True)} | "
                   f"{f(r['landsat_leak'])} | {int(r['beats_both'])} |")
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    from .train import DEFAULT_DATA

    p = argparse.ArgumentParser(prog="python -m training.select_real",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", nargs="+", required=True)
    p.add_argument("--data", default=str(DEFAULT_DATA), help="the shared data folder")
    p.add_argument("--work", default="/tmp/wsfusion_select_real")
    p.add_argument("--out", default="select_real", help="folder for select.json / select.md")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    root = Path(a.data) / "real_clouds"
    if not (root / "sen12mscr_pairs").is_dir():
        print(f"select_real: {root}: real-cloud data not found", file=sys.stderr)
        return 1
    rows = rank(a.weights, root, Path(a.work), a.jobs, a.device)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "select.json").write_text(json.dumps(rows, indent=1) + "\n")
    md = markdown(rows)
    (out / "select.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
