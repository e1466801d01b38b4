"""``wsfusion-raster``: the command line face of ``wsfusion_core.api`` (fuse, info, demo).

Every user-facing failure is one line ``Error: <message>`` on stderr and exit 1, so shell
scripts and GIS batch tools can rely on the exit code; Ctrl-C, SIGTERM and SIGHUP ask the engine
to stop at the next batch (it removes its temp files) and exit 128 + the signal number (130,
143, 129), the shell convention.
"""

from __future__ import annotations

import signal
import sys
import traceback
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import click

from .cli_options import (
    _STATE,
    _parse_bands,
    _Progress,
    _Stop,
    allow_large_option,
    allow_remote_option,
    debug_option,
    device_option,
    evidence_option,
    mask_options,
    scale_option,
)
from .errors import Cancelled, WeightsError, WsfusionError, shown
from .options import DEFAULT_MIN_AREA, METHODS, SELECTIONS, STAC_GROUPS

if TYPE_CHECKING:
    from .api import FusionResult

SAMPLE_DIR = Path(__file__).resolve().parent / "data" / "sample"


class _Group(click.Group):
    """Turns click usage errors, WsfusionError and Ctrl-C into one line and an exit code."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        code = 0
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except click.exceptions.NoArgsIsHelpError as exc:  # bare `wsfusion-raster`: help, exit 0
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        except (Cancelled, KeyboardInterrupt, click.Abort):
            _trace()
            signum = int(_STATE.get("signal") or signal.SIGINT)
            with suppress(OSError):  # after SIGHUP the terminal may be gone
                click.echo("Cancelled" + ("" if signum == signal.SIGINT else
                                          f" ({signal.Signals(signum).name})"), err=True)
            code = 128 + signum  # the shell convention: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP
        except click.ClickException as exc:
            _trace()
            click.echo(f"Error: {_one_line(exc.format_message())}", err=True)
            code = 1
        except WsfusionError as exc:
            _trace()
            click.echo(f"Error: {_one_line(_cli_message(exc))}", err=True)
            code = 1
        except Exception as exc:  # noqa: BLE001 - unexpected: still one line unless --debug
            if _STATE["debug"]:
                raise
            click.echo(f"Error: {type(exc).__name__}: {_one_line(str(exc))} "
                       "(run with --debug for the traceback)", err=True)
            code = 1
        if standalone_mode:
            sys.exit(code)
        return code


def _cli_message(exc: WsfusionError) -> str:
    """The core's message with its hint reworded in this command's flags."""
    from .remote import RemoteRefused
    from .size_guard import LARGE_HINT
    from .weights import NO_MODEL_HINT
    from .writers import OVERWRITE_HINT

    flags = {NO_MODEL_HINT: "pass --weights PATH to a wsfusion model, or use --method mean / "
                            "--method median",
             OVERWRITE_HINT: "use --overwrite to replace it",
             LARGE_HINT: "pass --allow-large to run it anyway"}
    hint = exc.hint
    if hint is None and isinstance(exc, WeightsError):  # any model problem: the same way out
        hint = NO_MODEL_HINT
    if isinstance(exc, RemoteRefused) and hint is not None:
        flags[hint] = f"allow its {exc.what} with --allow-remote {exc.pattern}"
    if hint not in flags:
        return str(exc)
    text = f"{shown(exc.path)}: {exc.message}" if exc.path is not None else exc.message
    return f"{text}; {flags[hint]}"


def _one_line(msg: str) -> str:
    return " ".join(msg.split())


def _trace() -> None:
    if _STATE["debug"]:
        traceback.print_exc()


@click.group(cls=_Group, no_args_is_help=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="wsfusion", prog_name="wsfusion-raster")
@debug_option
def main() -> None:
    """Fuse co-located overhead images (clouds, gaps) into one clean GeoTIFF and map roads and
    buildings from it."""


# ------------------------------------------------------------------------------------ fuse


def _run_fuse(inputs: Sequence[str], output: str, quiet: bool, desc: str = "fusing",
              force_hint: bool = False, **kwargs: Any) -> FusionResult:
    from .api import fuse

    progress = _Progress(quiet, desc)
    try:
        with _Stop() as stop:
            result = fuse(list(inputs), output, progress=progress.update, cancel=stop,
                          log=progress.log, **kwargs)
    finally:
        progress.close()
    from .resolution import REFUSAL

    for text in result.warnings:  # even with --quiet: an output asked for was not written
        hint = "; --force-segmentation writes it anyway" if force_hint and text.startswith(
            REFUSAL) else ""
        click.echo(f"Warning: {text}{hint}", err=True)
    return result


def _summary(result: FusionResult, extra: Sequence[tuple[str, str]] = ()) -> str:
    rows = [("fused", f"{result.output} ({result.count} band(s), {result.width} x "
                      f"{result.height} px, {result.crs or 'no CRS'})")]
    if result.segmentation is not None:
        rows.append(("segmentation", str(result.segmentation)))
    if result.quality is not None:
        rows.append(("quality", str(result.quality)))
    if result.selection_index is not None:
        rows.append(("input index", str(result.selection_index)))
    if result.vectors is not None:
        rows.append(("vectors", str(result.vectors)))
    rows += list(extra)
    rows.append(("method", result.method + (f" (model {result.model})" if result.model else "")
                 + (", best pixel" if result.selection == "best" else "")))
    rows.append(("device", result.device))
    mpx = result.width * result.height / 1e6
    rows.append(("time", f"{result.seconds:.1f} s for {mpx:.2f} Mpx ({result.tiles} tiles)"))
    width = max(len(k) for k, _ in rows) + 1
    return "\n".join(f"{k + ':':<{width}} {v}" for k, v in rows)


@main.command()
@click.argument("inputs", nargs=-1, required=False, metavar="INPUT...",
                type=click.Path(dir_okay=True, path_type=str))
@click.option("-o", "--output", required=True, type=click.Path(path_type=str),
              help="Fused GeoTIFF to write (same bands and data type as the inputs).")
@click.option("--input-list", type=click.Path(path_type=str),
              help="Text file of input paths, one per line (instead of INPUT...).")
@click.option("--stac", type=click.Path(path_type=str),
              help="STAC ItemCollection JSON on disk; items of one date become one input.")
@click.option("--asset", default="visual", show_default=True, metavar="KEY[,KEY...]|bands",
              help="STAC asset to read; several keys (red,green,blue) stack single-band "
              "assets in that order; 'bands': every band asset (eo:bands common name) in "
              "the order of the Sentinel-2 / Landsat layout they form.")
@click.option("--mask-asset", default=None, metavar="NAME",
              help="STAC asset holding each item's sensor mask (e.g. scl, qa_pixel; default "
              "from --mask), mosaicked per date like the images.")
@mask_options
@click.option("--mask-fallback", type=click.Choice(["least-masked"]), default=None,
              help="Where the masks flag every input: use the input its mask flags least over "
              "the whole raster (default: nodata there).")
@click.option("--group", type=click.Choice(list(STAC_GROUPS)), default="solar_day",
              show_default=True, help="How STAC items are grouped into dates.")
@click.option("--segmentation", type=click.Path(path_type=str),
              help="Also write the road/building class map (uint8, 255 = nodata).")
@click.option("--force-segmentation", is_flag=True,
              help="Write --segmentation even where the pixels are more than 4x outside the "
              "ground resolutions the model was trained on (default: left out, with a "
              "warning).")
@click.option("--quality", type=click.Path(path_type=str),
              help="Also write the per-input weights (float32, one band per input).")
@click.option("--vectors", type=click.Path(path_type=str), metavar="OUT.gpkg",
              help="Also write the class map as vectors: a GeoPackage with one polygon layer "
              "per class (building, road) with area_m2 (roads: length_m, width_m).")
@click.option("--min-area", type=click.FloatRange(min=0), default=DEFAULT_MIN_AREA,
              show_default=True, metavar="M2",
              help="Minimum mapping unit of --vectors in m²: smaller features and holes are "
              "dropped.")
@click.option("--weights", type=click.Path(path_type=str),
              help="Model weights (.safetensors); default: the shipped model.")
@click.option("--method", type=click.Choice(list(METHODS)), default="learned",
              show_default=True, help="learned: quality-weighted (the paper); mean/median: "
              "per-pixel composite of the valid inputs; min-blue: per pixel the valid input "
              "with the lowest blue (the last of --bands); no network for these.")
@click.option("--selection", type=click.Choice(list(SELECTIONS)), default="blend",
              show_default=True, help="blend: the weighted average of the inputs; best: each "
              "pixel copied unchanged from the valid input with the highest weight (ties: the "
              "first input). Not with --method median.")
@click.option("--selection-index", type=click.Path(path_type=str),
              help="With --selection best, also write which input each pixel comes from "
              "(1..N in input order, 0 = nodata; uint8, uint16 beyond 254 inputs).")
@device_option
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Tiles per network batch (default 32 on GPU, 2 on CPU).")
@click.option("--compile", "compile_", is_flag=True,
              help="torch.compile the networks: about 1.1x faster on large rasters, after a "
              "minute or more of compiling.")
@click.option("--bf16", is_flag=True,
              help="Run the networks in bfloat16: faster where the CPU/GPU supports it, outputs "
              "move by up to ~12 grey levels.")
@click.option("--overlap", type=click.IntRange(min=0), default=64, show_default=True,
              help="Pixels shared by neighbouring tiles (blended to hide seams).")
@click.option("--bands", callback=_parse_bands, default=None, metavar="B,B,B",
              help="1-based bands fed to the networks as RGB (default: the true colour of a "
              "recognised Sentinel-2 / Landsat stack, else 1,2,3); all bands are fused.")
@scale_option
@evidence_option
@click.option("--reference", type=click.Path(path_type=str),
              help="Raster whose grid the outputs use (default: the first input).")
@click.option("--cog", is_flag=True, help="Write Cloud Optimized GeoTIFFs.")
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Run on a local Dask cluster of N worker processes.")
@click.option("--cluster", "address", default=None, metavar="ADDR",
              help="Run on an existing Dask scheduler (e.g. tcp://host:8786).")
@click.option("--scheduler-file", type=click.Path(path_type=str), default=None,
              help="Run on the Dask scheduler described by this file.")
@click.option("--chunk", type=click.IntRange(min=256), default=None,
              help="Output window side in pixels for chunked / cluster runs (default 4096).")
@click.option("--resume", is_flag=True,
              help="Reuse the finished windows of an interrupted chunked run.")
@click.option("--verify", is_flag=True, help="Decode every block of the outputs before "
              "publishing them (always checked: their structure).")
@allow_remote_option
@allow_large_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or info lines.")
@debug_option
def fuse(inputs: tuple[str, ...], output: str, input_list: str | None, stac: str | None,
         asset: str, mask_asset: str | None, mask_preset: str | None,
         mask_values: tuple[int, ...] | None, mask_bits: tuple[int, ...] | None,
         mask_files: tuple[str, ...], mask_fallback: str | None, group: str,
         segmentation: str | None,
         force_segmentation: bool,
         quality: str | None, vectors: str | None, min_area: float, weights: str | None,
         method: str, selection: str,
         selection_index: str | None, device: str, batch_size: int | None, compile_: bool,
         bf16: bool, overlap: int, bands: tuple[int, ...] | None, scale: str,
         evidence_bands: str | tuple[int, ...], reference: str | None, cog: bool,
         overwrite: bool, verify: bool, workers: int | None, address: str | None,
         scheduler_file: str | None, chunk: int | None, resume: bool,
         allow_remote: tuple[str, ...], allow_large: bool, quiet: bool) -> None:
    """Fuse INPUT rasters of the same place into one GeoTIFF.

    One input is accepted (useful with --segmentation to map a single image); fusion needs
    two or more. Inputs on other grids are warped onto the reference grid on the fly.

    \b
    Examples:
      wsfusion-raster fuse a.tif b.tif c.tif -o fused.tif --segmentation classes.tif
      wsfusion-raster fuse a.tif b.tif -o fused.tif --workers 8
      wsfusion-raster fuse --stac items.json -o fused.tif --cluster tcp://scheduler:8786
      wsfusion-raster fuse https://data.example.org/a.tif s3://bucket/b.tif -o fused.tif \\
          --allow-remote data.example.org --allow-remote s3://bucket
    """
    given = [n for n, v in (("INPUT...", inputs), ("--input-list", input_list),
                            ("--stac", stac)) if v]
    if len(given) != 1:
        raise click.UsageError("give the inputs one way: INPUT..., --input-list or --stac"
                               + (f" (got {' and '.join(given)})" if given else ""))
    clusters = [v for v in (workers, address, scheduler_file) if v is not None]
    if len(clusters) > 1:
        raise click.UsageError("--workers, --cluster and --scheduler-file exclude each other")
    kwargs: dict[str, Any] = dict(
        segmentation=segmentation, quality=quality, vectors=vectors, min_area=min_area,
        method=method, weights=weights,
        selection=selection, selection_index=selection_index, device=device,
        batch_size=batch_size, overlap=overlap, bands=bands, scale=scale,
        reference=reference, cog=cog, overwrite=overwrite, verify=verify,
        cluster=clusters[0] if clusters else None, chunk=chunk, resume=resume,
        compile=compile_, bf16=bf16, allow_remote=allow_remote, evidence_bands=evidence_bands,
        allow_large=allow_large,
        force_segmentation=force_segmentation)
    rule, mask_asset = _mask_choice(mask_preset, mask_values, mask_bits, mask_files,
                                    mask_asset, bool(stac))
    if mask_fallback and not (mask_files or mask_asset):
        raise click.UsageError("--mask-fallback needs sensor masks (--mask-file or, with "
                               "--stac, --mask / --mask-asset)")
    kwargs.update(mask_rule=rule, masks=[m for m in mask_files] if mask_files else None,
                  mask_fallback=mask_fallback)
    if stac:
        from .sources import stac_inputs_and_masks

        with stac_inputs_and_masks(stac, asset, mask_asset, group, output,
                                   allow_remote) as (paths, masks):
            if masks is not None:
                kwargs["masks"] = masks
            result = _run_fuse(paths, output, quiet, force_hint=True, **kwargs)
    else:
        if input_list:
            from .sources import read_input_list

            inputs = tuple(read_input_list(input_list))
        result = _run_fuse(inputs, output, quiet, force_hint=True, **kwargs)
    extra = []
    if result.chunks is not None:
        st = result.chunks
        extra.append(("chunks", f"{st.chunks} ({st.reused} reused) on {st.workers} worker(s)"))
    click.echo(_summary(result, extra))


def _mask_choice(preset: str | None, values: tuple[int, ...] | None,
                 bits: tuple[int, ...] | None, files: tuple[str, ...], asset: str | None,
                 stac: bool) -> tuple[Any, str | None]:
    """(the mask rule, the STAC mask asset) from the mask options, or a usage error."""
    from .masks import PRESETS, mask_rule

    given = [n for n, v in (("--mask", preset), ("--mask-values", values),
                            ("--mask-bits", bits)) if v]
    if len(given) > 1:
        raise click.UsageError(f"choose the mask rule one way: {' or '.join(given)}")
    if asset is not None and not stac:
        raise click.UsageError("--mask-asset is for --stac inputs; give --mask-file otherwise")
    if asset is not None and files:
        raise click.UsageError("give the masks one way: --mask-asset or --mask-file")
    if stac and asset is None and preset and not files:
        asset = PRESETS[preset][0]
    if given and not files and asset is None:
        raise click.UsageError(f"{given[0]} needs the masks: --mask-file (one per input)"
                               + (" or --mask-asset" if stac else ""))
    if (files or asset) and not given:
        raise click.UsageError("the masks need a rule: --mask s2-scl|landsat-qa, "
                               "--mask-values or --mask-bits")
    return mask_rule(preset, values, bits), asset


# ------------------------------------------------------------------------------------ info


@main.command()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...",
                type=click.Path(path_type=str))
@click.option("--reference", type=click.Path(path_type=str),
              help="Raster whose grid fuse would use (default: the first input).")
@click.option("--bands", callback=_parse_bands, default=None, metavar="B,B,B",
              help="Bands fuse would feed to the networks (default: the true colour of a "
              "recognised Sentinel-2 / Landsat stack, else 1,2,3).")
@scale_option
@evidence_option
@click.option("--weights", type=click.Path(path_type=str),
              help="Model weights fuse would use (default: chosen as fuse chooses).")
@click.option("--method", type=click.Choice(list(METHODS)), default="learned",
              show_default=True, help="The method fuse would be given.")
@click.option("--selection", type=click.Choice(list(SELECTIONS)), default="blend",
              show_default=True, help="The selection fuse would be given (blend or best).")
@mask_options
@allow_remote_option
@allow_large_option
@debug_option
def info(inputs: tuple[str, ...], reference: str | None,
         bands: tuple[int, ...] | None, scale: str, evidence_bands: str | tuple[int, ...],
         weights: str | None, method: str, selection: str, mask_preset: str | None,
         mask_values: tuple[int, ...] | None, mask_bits: tuple[int, ...] | None,
         mask_files: tuple[str, ...], allow_remote: tuple[str, ...],
         allow_large: bool) -> None:
    """Show grids, CRS, nodata/masks and overlap of INPUT rasters, and what fuse would do."""
    from .report import inspect

    rule, _ = _mask_choice(mask_preset, mask_values, mask_bits, mask_files, None, False)
    click.echo(inspect(list(inputs), reference=reference, bands=bands, scale=scale,
                       allow_remote=allow_remote, evidence_bands=evidence_bands,
                       weights=weights, allow_large=allow_large, method=method,
                       selection=selection, masks=list(mask_files) or None,
                       mask_rule=rule).to_text())


# ------------------------------------------------------------------------------------ demo


# name, folder, network bands, scale, also a median beside the fused image
DEMO_CASES = (("banepa", "banepa", (1, 2, 3), "auto", False),
              ("s2", "s2_pair", (1, 2, 3), "s2", True))


def sample_inputs(sample_dir: Path = SAMPLE_DIR / "banepa") -> list[Path]:
    """The shipped inputs of one demo case (``input_*.tif``), in order."""
    files = sorted(sample_dir.glob("input_*.tif"))
    if not files:
        raise WsfusionError(f"{sample_dir}: no sample inputs (input_*.tif) found; "
                            "reinstall wsfusion or run scripts/make_sample.py")
    return files


def _default_weights_available() -> bool:
    from .weights import resolve_weights

    try:
        return resolve_weights(None).is_file()
    except WsfusionError:
        return False


@main.command()
@click.option("-o", "--output", "output_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("wsfusion-demo"), show_default=True,
              help="Folder for the demo outputs (created; its demo files are replaced).")
@click.option("--method", type=click.Choice(list(METHODS)), default=None,
              help="Default: learned if the shipped model is present, else median.")
@click.option("--weights", type=click.Path(path_type=str),
              help="Model weights (.safetensors); default: the shipped model.")
@device_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or info lines.")
@debug_option
def demo(output_dir: Path, method: str | None, weights: str | None, device: str,
         quiet: bool) -> None:
    """Fuse the shipped samples and write PNG quicklooks: Banepa (real 0.5 m imagery, synthetic
    clouds) with segmentation, and a real cloudy/clear Sentinel-2 pair beside its median."""
    from .quicklook import quicklook

    have_model = weights is not None or _default_weights_available()
    if method is None:
        method = "learned" if have_model else "median"
        if not have_model:
            click.echo("No trained weights are shipped with this install: using --method "
                       "median (no segmentation). Pass --weights PATH for the learned fusion.",
                       err=True)
    if method == "learned" and not have_model:
        raise WsfusionError("the learned method needs a model and none is shipped; pass "
                            "--weights PATH or use --method median")
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, folder, bands, scale, with_median in DEMO_CASES:
        inputs = sample_inputs(SAMPLE_DIR / folder)
        out = {k: output_dir / f"demo_{name}_{k}.tif" for k in ("fused", "segmentation",
                                                                  "quality", "median")}
        png = output_dir / f"demo_{name}_quicklook.png"
        seg = out["segmentation"] if have_model else None
        qual = out["quality"] if method != "median" else None
        result = _run_fuse([str(p) for p in inputs], str(out["fused"]), quiet,
                           desc=f"demo {name}", segmentation=seg, quality=qual, method=method,
                           weights=weights, device=device, bands=bands, scale=scale,
                           overwrite=True)
        extra: list[tuple[str, Path]] = []
        if with_median and method != "median":
            _run_fuse([str(p) for p in inputs], str(out["median"]), quiet,
                      desc=f"demo {name} median", method="median", bands=bands,
                      overwrite=True)
            extra.append(("median", out["median"]))
        if seg is not None and result.segmentation is None:
            seg.unlink(missing_ok=True)  # the guard fired: no stale class map of an older run
        # the resolution guard's sentence stands in the segmentation panel when it fired
        quicklook(inputs, out["fused"], png, segmentation=result.segmentation, quality=qual,
                  extra=extra, bands=bands, scale=scale,
                  segmentation_note=result.warnings[0] if result.warnings else None)
        click.echo(_summary(result, [("quicklook", str(png)),
                                     ("inputs", ", ".join(p.name for p in inputs))]))


if __name__ == "__main__":
    main()
