"""Real-cloud validation: does the fusion pick the clear input where real clouds are?

Every case is written as GeoTIFFs and fused through ``wsfusion_core.fuse`` exactly as a user
would (``--bands``, ``--quality``, ``--scale``); only the scoring is done here. These scenes are
validation data: they choose the shipped model, nothing is tuned on them.

Cases (``../shared/data/real_clouds``):

- ``s2-<patch>`` (K = 2): a Sentinel-2 L1C cloudy acquisition and the clear one of the same
  footprint (13 bands uint16, networks read B4,B3,B2). The clear image is the answer where the
  cloudy one is clouded. Clouded pixels (:func:`s2_clouded`): cloud or haze where the cloudy
  B2 (blue) exceeds the clear B2 by more than 0.03 reflectance; cloud shadow where it does not
  and the cloudy B8 (NIR) is below 0.75 x the clear B8 and darker by more than 0.03. Both are
  dilated by 2 px (cloud edges).
- ``s2-<patch>+overcast`` (K = 3): the same plus a wholly overcast input: the cloudy acquisition
  of patch 136_p280 (same region and date, 98 % clouded by the rule above, its ground not
  visible), given the case's grid.
- ``landsat-<date>`` (K = 4): Landsat 5/7 surface reflectance (int16 x 10000, nodata -9999) of
  one 61 x 61 px footprint with Fmask labels; bands SWIR1, NIR, red fed as the networks' RGB.
  A partly cloudy summer date, the summer dates before and after it, and the nearest wholly
  overcast date. Fmask gives clear (land, water), bad (cloud, shadow) and neither (snow, fill).
  The answer at a pixel is the mean of the inputs Fmask calls clear there.

Scored pixels: where some valid input is bad and another is clear. Metrics there: L1 (mean
absolute reflectance difference over the network bands) to the answer; the share of the
mean→oracle L1 gap captured (oracle: per pixel the valid input closest to the answer); cloud
leakage (total weight on bad inputs); for the overcast input, its total weight over all pixels
where another input is clear. Methods: the learned fusion (each weights file), the mean and
median composites, the minimum-blue composite (`fuse(method="min-blue")` on all bands,
blue being the last network band: B2 for Sentinel-2; Landsat has no blue band, so its shortest
band, red) and the oracle.
"""

from __future__ import annotations

import glob
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import rasterio
from scipy import ndimage

S2_BANDS = (4, 3, 2)  # red, green, blue of the 13-band L1C stack
S2_BLUE = 2  # band index (1-based) of blue
S2_OVERCAST = "136_p280"  # the cloudy patch that is wholly clouded
CLOUD_BLUE = 300  # DN (reflectance x 10000): cloud/haze brightening in blue
SHADOW_RATIO, SHADOW_NIR = 0.75, 300  # cloud shadow darkening in NIR
EDGE_PX = 2
LANDSAT_BANDS = ("b5", "b4", "b3")  # SWIR1, NIR, red → the networks' R, G, B (red: min-blue's)
SUMMER = (130, 280)  # day of year: no snow
OVERCAST_SHARE = 0.98
LANDSAT_STACKS = 8
REFLECTANCE = 1e-4  # both sources store reflectance x 10000
METHODS = ("mean", "median", "min-blue", "oracle")


@dataclass
class Case:
    """One stack of real acquisitions, written as GeoTIFFs, with what is known about them."""

    name: str
    inputs: list[Path]
    bands: tuple[int, ...]  # fed to the networks (and scored); the last is min-blue's blue
    bad: np.ndarray  # (K, H, W) cloud or shadow
    clear: np.ndarray  # (K, H, W)
    answer: np.ndarray  # (C, H, W) reflectance of the scored bands
    overcast: int | None = None  # index of the wholly overcast input
    notes: str = ""
    scored: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.scored = self.bad.any(axis=0) & self.clear.any(axis=0)


# ------------------------------------------------------------------------------ cases


def s2_clouded(cloudy: np.ndarray, clear: np.ndarray) -> np.ndarray:
    """(H, W) pixels the cloudy 13-band acquisition loses to cloud, haze or cloud shadow."""
    c, k = cloudy.astype(np.float64), clear.astype(np.float64)
    cloud = c[S2_BLUE - 1] - k[S2_BLUE - 1] > CLOUD_BLUE
    nir_c, nir_k = c[7], k[7]  # B8
    shadow = ~cloud & (nir_c < SHADOW_RATIO * nir_k) & (nir_k - nir_c > SHADOW_NIR)
    return ndimage.binary_dilation(cloud | shadow, iterations=EDGE_PX)


def _write_like(src_path: Path, dst: Path, data: np.ndarray | None = None,
                profile_from: Path | None = None) -> Path:
    """Copy ``src_path`` (or write ``data``) as a GeoTIFF on the grid of ``profile_from``."""
    with rasterio.open(src_path) as src:
        arr = src.read() if data is None else data
        prof = src.profile
    if profile_from is not None:
        with rasterio.open(profile_from) as ref:
            prof.update(crs=ref.crs, transform=ref.transform)
    prof.update(driver="GTiff", compress="deflate", tiled=False)
    prof.pop("blockxsize", None)
    prof.pop("blockysize", None)
    with rasterio.open(dst, "w", **prof) as out:
        out.write(arr)
    return dst


def s2_cases(root: Path, work: Path) -> list[Case]:
    """The Sentinel-2 pairs (K = 2) and the pairs with a wholly overcast third input (K = 3)."""
    base = root / "sen12mscr_pairs"
    work.mkdir(parents=True, exist_ok=True)
    overcast_src = next(iter(glob.glob(str(base / "cloudy" / f"*_{S2_OVERCAST}.tif"))), None)
    cases = []
    for clear_path in sorted(Path(p) for p in glob.glob(str(base / "clear" / "*.tif"))):
        patch = re.search(r"_s2_(\d+_p\d+)\.tif$", clear_path.name).group(1)
        cloudy_path = base / "cloudy" / clear_path.name.replace("_s2_", "_s2_cloudy_")
        with rasterio.open(clear_path) as s:
            clear = s.read()
        with rasterio.open(cloudy_path) as s:
            cloudy = s.read()
        bad = s2_clouded(cloudy, clear)
        idx = [b - 1 for b in S2_BANDS]
        answer = clear[idx].astype(np.float64) * REFLECTANCE
        a = _write_like(cloudy_path, work / f"{patch}_cloudy.tif")
        b = _write_like(clear_path, work / f"{patch}_clear.tif")
        none = np.zeros_like(bad)
        cases.append(Case(f"s2-{patch}", [a, b], S2_BANDS, np.stack([bad, none]),
                          np.stack([~bad, ~none]), answer,
                          notes=f"{100 * bad.mean():.0f} % clouded"))
        if overcast_src is None or patch == S2_OVERCAST:
            continue
        with rasterio.open(overcast_src) as s:
            over = s.read()
        c = _write_like(Path(overcast_src), work / f"{patch}_overcast.tif", over,
                        profile_from=clear_path)
        ones = np.ones_like(bad)
        cases.append(Case(f"s2-{patch}+overcast", [a, c, b], S2_BANDS,
                          np.stack([bad, ones, none]), np.stack([~bad, ~ones, ~none]), answer,
                          overcast=1, notes=f"{100 * bad.mean():.0f} % clouded + overcast"))
    return cases


def _landsat_date(scene: str) -> tuple[int, int]:
    return int(scene[9:13]), int(scene[13:16])


def _landsat_read(folder: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    scene = folder.name
    data, prof = [], None
    for b in LANDSAT_BANDS:
        with rasterio.open(folder / f"{scene}_{b}.tif") as s:
            data.append(s.read(1))
            prof = s.profile
    with rasterio.open(folder / f"{scene}_fmask.tif") as s:
        fmask = s.read(1)
    return np.stack(data), fmask, prof


def landsat_cases(root: Path, work: Path, stacks: int = LANDSAT_STACKS) -> list[Case]:
    """Stacks of 4 dates: a partly cloudy summer date, its summer neighbours in date order and
    the nearest wholly overcast date (see the module text)."""
    base = root / "landsat_ts_fmask"
    work.mkdir(parents=True, exist_ok=True)
    scenes = {}
    for folder in sorted(Path(p) for p in glob.glob(str(base / "L*")) if Path(p).is_dir()):
        data, fmask, prof = _landsat_read(folder)
        valid = (fmask != 255) & (data != -9999).all(axis=0)
        bad = valid & np.isin(fmask, (2, 4))
        share = bad.sum() / max(valid.sum(), 1)
        scenes[folder.name] = dict(data=data, fmask=fmask, prof=prof, valid=valid, bad=bad,
                                   clear=valid & np.isin(fmask, (0, 1)), share=share,
                                   date=_landsat_date(folder.name))
    order = sorted(scenes, key=lambda n: scenes[n]["date"])
    summer = [n for n in order if SUMMER[0] <= scenes[n]["date"][1] <= SUMMER[1]]
    overcast = [n for n in order if scenes[n]["share"] >= OVERCAST_SHARE]
    used: set[str] = set()
    cases = []
    for i, name in enumerate(summer):
        s = scenes[name]
        if not 0.15 <= s["share"] <= 0.85 or name in used or 0 == i or i == len(summer) - 1:
            continue
        stack = [summer[i - 1], name, summer[i + 1]]
        if used & set(stack) or any(scenes[n]["date"][0] != s["date"][0] for n in stack):
            continue
        day = s["date"][0] * 366 + s["date"][1]
        over = min((n for n in overcast if n not in stack),
                   key=lambda n: abs(scenes[n]["date"][0] * 366 + scenes[n]["date"][1] - day))
        stack.insert(2, over)  # not last: the order of inputs must not matter
        used |= set(stack[:2] + stack[3:])
        paths = []
        for n in stack:
            sc = scenes[n]
            prof = dict(sc["prof"], count=len(LANDSAT_BANDS), driver="GTiff", compress="deflate")
            path = work / f"{n}.tif"
            with rasterio.open(path, "w", **prof) as out:
                out.write(sc["data"])
            paths.append(path)
        bad = np.stack([scenes[n]["bad"] for n in stack])
        clear = np.stack([scenes[n]["clear"] for n in stack])
        data = np.stack([scenes[n]["data"] for n in stack]).astype(np.float64) * REFLECTANCE
        cnt = clear.sum(axis=0)
        answer = np.divide((data * clear[:, None]).sum(axis=0), cnt,
                           out=np.zeros(data.shape[1:]), where=cnt > 0)
        cases.append(Case(f"landsat-{name[9:16]}", paths, (1, 2, 3), bad,
                          clear, answer, overcast=2,
                          notes=f"{100 * s['share']:.0f} % bad; dates "
                                + ", ".join(n[9:16] for n in stack)))
        if len(cases) == stacks:
            break
    return cases


# ------------------------------------------------------------------------------ scoring


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with rasterio.open(path) as s:
        return s.read(), s.dataset_mask() > 0


def score(case: Case, fused: np.ndarray, weights: np.ndarray | None) -> dict[str, float]:
    """L1 (reflectance) on the scored pixels, cloud leakage, overcast weight."""
    m = case.scored
    out: dict[str, float] = {"l1": float(np.abs(fused[:, m] - case.answer[:, m]).mean())
                             if m.any() else float("nan")}
    if weights is not None:
        w = np.nan_to_num(weights.astype(np.float64))
        out["leak"] = float((w * case.bad).sum(axis=0)[m].mean()) if m.any() else float("nan")
        if case.overcast is not None:
            others = np.delete(case.clear, case.overcast, axis=0).any(axis=0)
            out["overcast"] = float(w[case.overcast][others].mean())
    return out


def weights_label(path: str | Path) -> str:
    """A short name for a weights file: its stem, with the run folder for generic stems
    (``run/best``, ``run/epochs/epoch_07``)."""
    p = Path(path)
    if p.parent.name == "epochs":
        return f"{p.parent.parent.name}-{p.stem}"
    return f"{p.parent.name}-{p.stem}" if p.stem in ("best", "last", "weights") else p.stem


def run_case(case: Case, weights_files: Sequence[str], work: Path, scale: str = "auto",
             device: str = "cpu") -> dict[str, dict[str, float]]:
    """Fuse the case with every method through ``wsfusion_core.fuse`` and score it."""
    from wsfusion_core import fuse

    data, valid = zip(*(_read(p) for p in case.inputs))
    stack, valid = np.stack(data), np.stack(valid)
    idx = [b - 1 for b in case.bands]
    refl = stack[:, idx].astype(np.float64) * REFLECTANCE
    res: dict[str, dict[str, float]] = {}

    def fused_of(path: Path) -> np.ndarray:
        return _read(path)[0][idx].astype(np.float64) * REFLECTANCE

    for label, w in [(weights_label(w), w) for w in weights_files]:
        out, q = work / f"{case.name}_{label}.tif", work / f"{case.name}_{label}_q.tif"
        fuse(case.inputs, out, quality=q, weights=w, bands=case.bands, scale=scale,
             device=device, overwrite=True)
        res[f"ours:{label}"] = score(case, fused_of(out), _read(q)[0])
    out, q = work / f"{case.name}_mean.tif", work / f"{case.name}_mean_q.tif"
    fuse(case.inputs, out, quality=q, method="mean", bands=case.bands, overwrite=True)
    res["mean"] = score(case, fused_of(out), _read(q)[0])
    out = work / f"{case.name}_median.tif"
    fuse(case.inputs, out, method="median", bands=case.bands, overwrite=True)
    res["median"] = score(case, fused_of(out), None)
    out, q = work / f"{case.name}_minblue.tif", work / f"{case.name}_minblue_q.tif"
    fuse(case.inputs, out, quality=q, method="min-blue", bands=case.bands, overwrite=True)
    res["min-blue"] = score(case, fused_of(out), _read(q)[0])
    err = np.where(valid, np.abs(refl - case.answer[None]).sum(axis=1), np.inf)
    w = (np.arange(len(stack))[:, None, None] == err.argmin(axis=0)[None]) & valid.any(axis=0)
    res["oracle"] = score(case, (refl * w[:, None]).sum(axis=0), w.astype(np.float64))
    gap = res["mean"]["l1"] - res["oracle"]["l1"]
    for r in res.values():
        r["gap"] = (res["mean"]["l1"] - r["l1"]) / gap if gap > 0 else float("nan")
    return res


def summarise(per_case: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Mean of every metric over the cases, per method (NaN-free cases only)."""
    out: dict[str, dict[str, float]] = {}
    methods = next(iter(per_case.values())).keys()
    for m in methods:
        keys = {k for r in per_case.values() for k in r[m]}
        out[m] = {k: float(np.nanmean([r[m].get(k, np.nan) for r in per_case.values()]))
                  for k in sorted(keys)}
        out[m]["beats_median_and_minblue"] = float(np.mean(
            [r[m]["l1"] < min(r["median"]["l1"], r["min-blue"]["l1"])
             for r in per_case.values()]))
    return out


def all_cases(root: Path, work: Path) -> list[Case]:
    """Every real-cloud case, its GeoTIFFs written under ``work``."""
    return s2_cases(root, work / "s2") + landsat_cases(root, work / "landsat")


def run(root: Path, weights_files: Sequence[str], work: Path, scales: Sequence[str] = ("auto",),
        device: str = "cpu", log: Callable[[str], None] = print,
        cases: Sequence[Case] | None = None) -> dict[str, Any]:
    """All cases × all scales; returns {"cases": {...}, "scales": {scale: {per_case, mean}}}.
    ``cases``: already built by :func:`all_cases` (built here when not given)."""
    cases = list(cases) if cases is not None else all_cases(root, work)
    out: dict[str, Any] = {"cases": {c.name: {"inputs": [p.name for p in c.inputs],
                                              "scored_px": int(c.scored.sum()),
                                              "notes": c.notes} for c in cases},
                           "weights": [str(w) for w in weights_files], "scales": {}}
    for scale in scales:
        per_case = {}
        for c in cases:
            per_case[c.name] = run_case(c, weights_files, work, scale, device)
            ours = {k: round(v["l1"], 4) for k, v in per_case[c.name].items()}
            log(f"[{scale}] {c.name}: L1 {ours}")
        out["scales"][scale] = {"per_case": per_case,
                                "s2": summarise({k: v for k, v in per_case.items()
                                                 if k.startswith("s2")}),
                                "landsat": summarise({k: v for k, v in per_case.items()
                                                      if k.startswith("landsat")})}
    return out


# ------------------------------------------------------------------------------ report


def _f(v: float | None, pct: bool = False) -> str:
    if v is None or not np.isfinite(v):
        return "—"
    return f"{100 * v:.0f} %" if pct else f"{v:.4f}"


def compact_markdown(results: dict[str, Any]) -> str:
    """One line per method and scale: S2 and Landsat means, the mean gap over all cases and how
    many cases meet the issue-12 bar (L1 below both the median and min-blue)."""
    lines = ["| scale | method | S2 L1 | S2 gap | S2 leak | S2 overcast | Landsat L1 | Landsat gap "
             "| Landsat leak | Landsat overcast | gap, all cases | beats median & min-blue |",
             "|---" * 12 + "|"]
    for scale, r in results["scales"].items():
        pc = r["per_case"]
        for m in next(iter(pc.values())):
            s2, ls = r["s2"][m], r["landsat"][m]
            gap = float(np.nanmean([v[m]["gap"] for v in pc.values()]))
            beat = sum(v[m]["l1"] < min(v["median"]["l1"], v["min-blue"]["l1"])
                       for v in pc.values())
            lines.append(f"| {scale} | {m} | {_f(s2['l1'])} | {_f(s2['gap'], True)} | "
                         f"{_f(s2.get('leak'))} | {_f(s2.get('overcast'))} | {_f(ls['l1'])} | "
                         f"{_f(ls['gap'], True)} | {_f(ls.get('leak'))} | "
                         f"{_f(ls.get('overcast'))} | {_f(gap, True)} | {beat}/{len(pc)} |")
    return "\n".join(lines) + "\n"


def tables_markdown(results: dict[str, Any]) -> str:
    """The compact table, then per scale: averaged table per source, the per-case L1 table."""
    lines = [compact_markdown(results)]
    for scale, r in results["scales"].items():
        for src in ("s2", "landsat"):
            summ = r[src]
            lines += [f"**{src}, --scale {scale}: mean over {_count(r, src)} cases**", "",
                      "| method | L1 clouded px | gap captured | cloud leakage | overcast weight"
                      " | cases beating median & min-blue |", "|---|---|---|---|---|---|"]
            for m, v in summ.items():
                lines.append(f"| {m} | {_f(v['l1'])} | {_f(v['gap'], True)} | "
                             f"{_f(v.get('leak'))} | {_f(v.get('overcast'))} | "
                             f"{_f(v['beats_median_and_minblue'], True)} |")
            lines.append("")
        methods = list(next(iter(r["per_case"].values())).keys())
        lines += [f"**Per case, --scale {scale}: L1 on clouded pixels (gap captured; leakage)**",
                  "", "| case | " + " | ".join(methods) + " |",
                  "|---" * (len(methods) + 1) + "|"]
        for name, res in r["per_case"].items():
            cells = [f"{_f(res[m]['l1'])} ({_f(res[m]['gap'], True)}"
                     + (f"; {_f(res[m]['leak'])}" if "leak" in res[m] else "") + ")"
                     for m in methods]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def headline(results: dict[str, Any], label: str) -> dict[str, Any]:
    """The model card's real-cloud numbers for weights ``label``: per source (s2, landsat) and
    scale, the means of ours and of the baselines, and the targets of issue 12."""
    out: dict[str, Any] = {"cases": len(results["cases"]),
                           "definition": "docs/realclouds.md", "scales": {}}
    for scale, r in results["scales"].items():
        per = {}
        for src in ("s2", "landsat"):
            s = r[src]
            ours = s[f"ours:{label}"]
            cases = [v for k, v in r["per_case"].items() if k.startswith(src)]
            per[src] = {
                "ours": {k: round(v, 4) for k, v in ours.items()},
                "l1": {m: round(v["l1"], 4) for m, v in s.items()},
                "targets_met_cases": int(sum(
                    c[f"ours:{label}"]["l1"] < min(c["median"]["l1"], c["min-blue"]["l1"])
                    and c[f"ours:{label}"]["gap"] >= 0.9 and c[f"ours:{label}"]["leak"] <= 0.05
                    for c in cases)),
                "cases": len(cases)}
        out["scales"][scale] = per
    return out


def _count(r: dict[str, Any], src: str) -> int:
    return sum(k.startswith(src) for k in r["per_case"])


def figure(results_work: Path, cases: Sequence[Case], label: str, path: Path,
           scale: str = "auto") -> Path:
    """Rows of real cases: inputs | ours' weights | ours | median | min-blue | answer, all on
    the one scale the networks saw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from wsfusion_core.view import radiometry, to_unit

    kmax = max(len(c.inputs) for c in cases)
    cols = 2 * kmax + 4
    fig, axes = plt.subplots(len(cases), cols, figsize=(1.6 * cols, 1.75 * len(cases)),
                             squeeze=False)
    for row, c in zip(axes, cases):
        data, valid = zip(*(_read(p) for p in c.inputs))
        idx = [b - 1 for b in c.bands]
        rad = radiometry([d[idx] for d in data], list(valid), [d.dtype.name for d in data], scale)
        lo, hi = rad.lo[0], rad.hi[0]

        def rgb(a: np.ndarray, lo=lo, hi=hi) -> np.ndarray:
            return np.moveaxis(to_unit(a, lo, hi), 0, -1)

        fused = _read(results_work / f"{c.name}_{label}.tif")[0][idx]
        q = _read(results_work / f"{c.name}_{label}_q.tif")[0]
        med = _read(results_work / f"{c.name}_median.tif")[0][idx]
        mbi = _read(results_work / f"{c.name}_minblue.tif")[0][idx]
        panels = ([(f"input {i + 1}", rgb(d[idx])) for i, d in enumerate(data)]
                  + [None] * (kmax - len(data))
                  + [(f"weight {i + 1}", np.clip(w, 0, 1)) for i, w in enumerate(q)]
                  + [None] * (kmax - len(data))
                  + [("ours", rgb(fused)), ("median", rgb(med)), ("min-blue", rgb(mbi)),
                     ("answer", rgb(c.answer / REFLECTANCE))])
        for ax, p in zip(row, panels):
            ax.axis("off")
            if p is None:
                continue
            ax.imshow(p[1], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(p[0], fontsize=7)
        row[0].text(-0.1, 0.5, c.name, rotation=90, transform=row[0].transAxes, fontsize=6,
                    va="center", ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``wsfusion-evaluate real-clouds --weights W [W ...]``."""
    import argparse
    import sys

    from .train import DEFAULT_DATA

    p = argparse.ArgumentParser(prog="wsfusion-evaluate real-clouds",
                                description="Real-cloud validation through the real fuse path.")
    p.add_argument("--weights", nargs="+", default=None,
                   help="weights files (default: the shipped model)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="the shared data folder")
    p.add_argument("--scales", default="auto", help="comma-free list separated by ';', e.g. "
                   "'auto;per-input;s2'")
    p.add_argument("--work", default="realclouds_work", help="folder for the fused GeoTIFFs")
    p.add_argument("--out", default="docs/results", help="folder for realclouds.json / .md")
    p.add_argument("--figure", default=None, help="PNG of a few cases with the first weights "
                   "and the last scale (docs/img/...)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--ship", action="store_true", help="also ship the first --weights as the "
                   "default model with these numbers in its card (metrics.real_clouds)")
    p.add_argument("--status", default="final", help="status recorded when shipping")
    args = p.parse_args(argv)
    from wsfusion_core.weights import default_weights_path

    root = Path(args.data) / "real_clouds"
    if not (root / "sen12mscr_pairs").is_dir():
        print(f"wsfusion-evaluate: {root}: real-cloud data not found", file=sys.stderr)
        return 1
    weights = args.weights or [str(default_weights_path())]
    work = Path(args.work)
    cases = all_cases(root, work)
    results = run(root, weights, work, [s for s in args.scales.split(";") if s], args.device,
                  log=lambda m: print(m, file=sys.stderr, flush=True), cases=cases)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "realclouds.json").write_text(json.dumps(results, indent=1))
    md = tables_markdown(results)
    (out / "realclouds.md").write_text(md)
    if args.figure:
        label = weights_label(weights[0])
        shown = [c for c in cases if c.name in FIGURE_CASES]
        figure(work, shown, label, Path(args.figure), list(results["scales"])[-1])
    if args.ship:
        from .ship import ship

        path = ship(weights[0], status=args.status,
                    real_clouds=headline(results, weights_label(weights[0])))
        print(f"shipped {path}", file=sys.stderr)
    print(md)
    return 0


FIGURE_CASES = ("s2-136_p139+overcast", "s2-85_p492", "s2-85_p782", "landsat-2008214")
