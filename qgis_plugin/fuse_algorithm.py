"""The "Fuse overhead images" Processing algorithm: QGIS parameters in, ``wsfusion_core.fuse`` out.

A thin shell by design: it resolves layers to files (local, or the URL they were loaded from),
calls the core once, and turns the core's errors into ``QgsProcessingException``. All fusion
logic lives in ``wsfusion_core``.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsMapLayer,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsProcessingUtils,
    QgsProviderRegistry,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor, QIcon

from wsfusion_core.options import DEFAULT_MIN_AREA, DEFAULT_OVERLAP, DEVICES, METHODS, SELECTIONS
from wsfusion_core.options import parse_bands as _parse_bands

from . import dependencies
from .resources import ICON

# The user guide: shipped in the zip as docs/qgis.md, in the repository at ../docs/qgis.md.
_DOCS = [Path(__file__).resolve().parent / "docs" / "qgis.md",
         Path(__file__).resolve().parent.parent / "docs" / "qgis.md"]
HELP_URL = next((p.as_uri() for p in _DOCS if p.is_file()), "")
METHOD_LABELS = {"learned": "learned (quality network)"}  # others are shown as they are named
SELECTION_LABELS = {"blend": "Blend (weighted average)",
                    "best": "Best (each pixel from the input with the highest weight)"}
GEOTIFF_SUFFIXES = (".tif", ".tiff")

HELP = """<p>Fuses several overhead images of the same place, each spoiled in places by clouds, \
haze or missing data, into one clean image, and can map roads and buildings from it.</p>
<p><b>How it works.</b> With <i>learned</i> (the default), a small neural network looks at every \
input and scores each pixel for how usable it is; the scores are turned into weights that sum \
to one across the inputs at every pixel, and the output is the weighted average. Pixels that are \
nodata in an input get weight zero. The networks were trained only from road and building maps \
(Rafique, Blanton &amp; Jacobs, <i>Weakly Supervised Fusion of Multiple Overhead Images</i>). \
<i>mean</i>, <i>median</i> and <i>min-blue</i> (per pixel the input with the lowest blue, \
blue being the last of the network bands) are simple per-pixel composites that need no model.</p>
<p><b>Inputs.</b> One or more raster layers (fusion needs two or more to have a choice) that \
are files GDAL can read (GeoTIFF and the like; a layer loaded from a URL or object store is read \
from there), covering the same area, with the same \
bands, e.g. 8-bit RGB or RGB + near infrared. Every band is fused and written; \
<i>Network bands</i> only chooses which three the networks look at (default 1,2,3 = red, green, \
blue; e.g. 4,3,2 for Sentinel-2). 8-bit images are read as stored; other types are put on \
one radiometric scale for all inputs (<i>Radiometric scale</i>: <tt>auto</tt> estimates it \
jointly, <tt>s2</tt> means reflectance &times; 10000; also <tt>landsat-c2</tt>, \
<tt>reflectance</tt>, <tt>LO,HI</tt> or a divisor), so a cloudy input still looks brighter \
than a clear one. They are aligned onto the grid of the first input (or of <i>Output grid from \
layer</i>). \
Web layers (WMS, XYZ) \
must first be saved to a GeoTIFF.</p>
<p><b>Sensor masks</b> (optional): one mask layer per input, in the same order (e.g. each \
date's Sentinel-2 SCL or Landsat QA_PIXEL band, on any grid: read nearest-neighbour, nothing \
masked outside a mask's extent). Pixels the <i>Sensor mask rule</i> flags are treated as \
nodata: <i>SCL</i> classes 0 no data, 1 defective, 3 cloud shadow, 8/9 cloud, 10 cirrus; \
<i>QA_PIXEL</i> bits 0 fill, 1 dilated cloud, 2 cirrus, 3 cloud, 4 shadow (snow is kept); or \
your own class values or bit numbers. Where every input is masked the output is nodata, or, \
with <i>All masked: use the least-masked input</i>, the input whose mask flags the least of \
the raster.</p>
<p><b>Outputs.</b> <i>Fused image</i>: a GeoTIFF on the reference grid with all bands fused \
(red/green/blue tagged as such when the inputs are). \
<i>Segmentation</i> (optional): one byte band of classes (background, road, building for the \
shipped model), styled with the model's class names and colours, background transparent; it \
needs a model, and is left out (with a warning in the log) where the pixels are more than 4x \
outside the ground resolutions the model was trained on (0.1-2 m for the shipped one, so not \
for 10 m Sentinel-2) unless <i>Segmentation at any ground resolution</i> is ticked (the \
vectors too). <i>Per-input quality weights</i> (optional): one float band \
per input with that input's weight at each pixel (0 = not used, 1 = used alone). \
<i>Vectors (GeoPackage)</i> (optional): the class map as polygons, one layer per class \
(buildings, roads) with their area in m² (roads also an estimated length and width), \
features smaller than <i>Minimum mapping unit</i> dropped; added to the map in the class \
colours. It needs a model, like the segmentation.</p>
<p><b>Selection.</b> <i>Blend</i> (the default) writes the weighted average. <i>Best</i> copies \
every pixel unchanged, all bands, from the one valid input with the highest weight there (ties: \
the first input), which keeps spectral indices exact and answers "which date is this pixel \
from": <i>Input index</i> (optional) is then one band holding the input's number (1, 2, … in \
the order of the inputs, 0 = nodata), styled with the inputs' names. With <i>mean</i> the \
weights are equal, so <i>Best</i> takes the first valid input (list the inputs by preference); \
with <i>min-blue</i> it is the composite's own choice; <i>median</i> has no per-input weights \
and is refused. The segmentation still reads the blended image.</p>
<p><b>Model</b>: leave empty to use the model shipped with the plugin, or pick a \
<tt>.safetensors</tt> file from <tt>wsfusion-train</tt>. <b>Output grid from layer</b> \
(advanced): the outputs take this layer's grid instead of the first input's. <b>Device</b>: \
<i>auto</i> uses a CUDA GPU when PyTorch sees one.</p>
<p>The <i>learned</i> method and the segmentation need PyTorch; <i>mean</i>, <i>median</i> and \
<i>min-blue</i> need only rasterio and shapely. If packages are missing, this dialog says so \
before Run: run <i>Install Python dependencies</i> from this provider. The log names the device \
used and why.</p>"""


class SegmentationStyler(QgsProcessingLayerPostProcessorInterface):
    """Gives the segmentation output a paletted style with the model's class names and colours."""

    # Processing keeps only a raw pointer to post-processors: hold them here.
    _alive: list[SegmentationStyler] = []

    @classmethod
    def create(cls) -> SegmentationStyler:
        styler = cls()
        cls._alive.append(styler)
        return styler

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802
        if isinstance(layer, QgsRasterLayer):
            apply_segmentation_style(layer)


class VectorStyler(QgsProcessingLayerPostProcessorInterface):
    """Gives a vectors layer (one class) a fill in the class colour from the model."""

    _alive: list[VectorStyler] = []

    def __init__(self, colour: tuple[int, int, int]) -> None:
        super().__init__()
        self.colour = colour

    @classmethod
    def create(cls, colour: tuple[int, int, int]) -> VectorStyler:
        styler = cls(colour)
        cls._alive.append(styler)
        return styler

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802
        if isinstance(layer, QgsVectorLayer):
            apply_class_style(layer, self.colour)


def apply_class_style(layer: QgsVectorLayer, colour: tuple[int, int, int]) -> None:
    """A fill in the class colour (70 % opaque, the imagery shows through) with a solid
    outline of the same colour, darker: the class map's colours, as polygons."""
    from qgis.core import QgsFillSymbol, QgsSingleSymbolRenderer

    fill = QColor(*colour)
    fill.setAlpha(180)
    line = QColor(*colour).darker(150)
    symbol = QgsFillSymbol.createSimple({"color": ",".join(map(str, fill.getRgb())),
                                         "outline_color": ",".join(map(str, line.getRgb())),
                                         "outline_width": "0.3"})
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
    layer.triggerRepaint()


def segmentation_classes(path: str) -> list[tuple[int, str, tuple[int, int, int]]]:
    """(value, name, colour) per class, from the tags the core writes from the model's metadata
    (CLASS_NAMES, CLASS_COLOURS); the GeoTIFF's colour table fills in missing colours."""
    from osgeo import gdal

    with _gdal_errors_quiet():
        ds = gdal.Open(path)
    if ds is None:
        return []
    names = [n for n in (ds.GetMetadataItem("CLASS_NAMES") or "").split(",") if n]
    try:
        colours = [tuple(int(v) for v in c[:3])
                   for c in json.loads(ds.GetMetadataItem("CLASS_COLOURS") or "[]")]
    except (ValueError, TypeError):
        colours = []
    table = ds.GetRasterBand(1).GetColorTable()
    out = []
    for i, name in enumerate(names):
        if i < len(colours):
            rgb = colours[i]
        elif table is not None and i < table.GetCount():
            rgb = tuple(table.GetColorEntry(i)[:3])
        else:
            rgb = (128, 128, 128)
        out.append((i, name, rgb))
    return out


def apply_segmentation_style(layer: QgsRasterLayer) -> None:
    """Paletted classes from the file; the background class fully transparent, so the layer
    shows roads and buildings over the imagery instead of hiding it."""
    from qgis.core import QgsPalettedRasterRenderer

    classes = []
    for value, name, rgb in segmentation_classes(layer.source()):
        colour = QColor(*rgb)
        if name.lower() == "background":
            colour.setAlpha(0)
        classes.append(QgsPalettedRasterRenderer.Class(value, colour, name))
    if not classes:
        return
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))
    layer.triggerRepaint()


class IndexStyler(QgsProcessingLayerPostProcessorInterface):
    """Gives the input-index output a paletted style: one class per input, labelled with its
    file name (the date, for a time series); nodata (0) is left out, so it stays transparent."""

    _alive: list[IndexStyler] = []  # Processing keeps only a raw pointer

    @classmethod
    def create(cls) -> IndexStyler:
        styler = cls()
        cls._alive.append(styler)
        return styler

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802
        if isinstance(layer, QgsRasterLayer):
            apply_index_style(layer)


def index_classes(path: str) -> list[tuple[int, str, tuple[int, int, int]]]:
    """(value, input name, colour) per input, from the tags and colour table the core writes
    (writers.open_index: WSFUSION_INDEX_INPUTS, a JSON list in input order)."""
    from osgeo import gdal

    with _gdal_errors_quiet():
        ds = gdal.Open(path)
    if ds is None:
        return []
    try:
        names = [str(n) for n in json.loads(ds.GetMetadataItem("WSFUSION_INDEX_INPUTS") or "[]")]
    except (ValueError, TypeError):
        names = []
    table = ds.GetRasterBand(1).GetColorTable()
    out = []
    for i, name in enumerate(names, start=1):
        rgb = (tuple(table.GetColorEntry(i)[:3]) if table is not None and i < table.GetCount()
               else (128, 128, 128))
        out.append((i, name, rgb))
    return out


def apply_index_style(layer: QgsRasterLayer) -> None:
    """Paletted classes named after the inputs, so the legend reads which date each pixel is
    from (GeoTIFF keeps no category names without a sidecar file: the names are tags)."""
    from qgis.core import QgsPalettedRasterRenderer

    classes = [QgsPalettedRasterRenderer.Class(value, QColor(*rgb), name)
               for value, name, rgb in index_classes(layer.source())]
    if not classes:
        return
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))
    layer.triggerRepaint()


def device_reason(requested: str, used: str, needs_net: bool) -> str:
    """Why the run used ``used``: what was asked, and what PyTorch reports."""
    if not needs_net:
        return "composite without segmentation: no network, numpy on the CPU"
    import torch

    if used.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(used))
        return f"device {requested!r} and PyTorch sees the CUDA GPU {name}"
    if requested == "cpu":
        return "device 'cpu' was chosen"
    if torch.version.cuda is None:
        return f"device {requested!r}, but this PyTorch {torch.__version__} is a CPU-only build"
    return (f"device {requested!r}, but PyTorch {torch.__version__} (CUDA {torch.version.cuda}) "
            "finds no usable CUDA GPU")


def remote_pattern(path: str, name: str) -> str:
    """The ``allow_remote`` pattern for a layer QGIS reads from a URL or object store: exactly
    its scheme and host (or bucket). A layer the user loaded is a deliberate choice, so the
    algorithm allows those hosts and no other (wsfusion_core.remote holds the rule; the CLI asks
    for ``--allow-remote`` instead)."""
    from wsfusion_core.errors import WsfusionError
    from wsfusion_core.remote import parse_remote

    try:
        remote = parse_remote(path)
    except WsfusionError as exc:
        raise QgsProcessingException(f"Layer '{name}': {exc}") from None
    if remote is None:
        raise QgsProcessingException(f"Layer '{name}': {path} is not a local file")
    return f"{remote.scheme}://{remote.authority}"


def local_raster_path(layer: QgsMapLayer | None, label: str) -> str:
    """The file behind a raster layer (a local path, or the GDAL name of a layer read from a URL
    or object store), or a QgsProcessingException that names the layer."""
    if layer is None:
        raise QgsProcessingException(f"Input '{label}': not a layer in the project and not a "
                                     "raster file QGIS can open")
    name = layer.name() or label
    if not isinstance(layer, QgsRasterLayer):
        raise QgsProcessingException(f"Layer '{name}' is not a raster layer")
    if layer.providerType() != "gdal":
        raise QgsProcessingException(
            f"Layer '{name}' is not a local raster file (data provider '{layer.providerType()}');"
            " wsfusion reads files GDAL can open: save the layer as a GeoTIFF first "
            "(Raster ▸ Conversion ▸ Translate, or Export ▸ Save As…)")
    parts = QgsProviderRegistry.instance().decodeUri("gdal", layer.source())
    path = parts.get("path") or layer.source()
    if path.startswith(("/vsi", "http://", "https://")):
        remote_pattern(path, name)  # read from where the user loaded it (checked there)
        return path
    if not os.path.isfile(path):
        raise QgsProcessingException(f"Layer '{name}': {path} is not a local file")
    from osgeo import gdal

    with _gdal_errors_quiet():
        ds = gdal.OpenEx(path, gdal.OF_RASTER)
        msg = gdal.GetLastErrorMsg()
    if ds is None:
        raise QgsProcessingException(
            f"Layer '{name}': GDAL cannot read {path} ({msg or 'unknown format'})")
    if ds.RasterCount < 1:
        raise QgsProcessingException(f"Layer '{name}': {path} has no raster bands")
    return path


@contextmanager
def _gdal_errors_quiet():
    """GDAL would print its own error to the console; we report it in the exception instead."""
    from osgeo import gdal

    gdal.PushErrorHandler("CPLQuietErrorHandler")
    gdal.ErrorReset()
    try:
        yield
    finally:
        gdal.PopErrorHandler()


def _given(value) -> bool:
    """Whether an optional destination parameter asks for an output (without resolving it:
    resolving a temporary output twice would name two different files)."""
    from qgis.core import QgsProcessingOutputLayerDefinition, QgsProperty

    if isinstance(value, QgsProcessingOutputLayerDefinition):
        if value.sink.propertyType() != QgsProperty.StaticProperty:
            return True
        value = value.sink.staticValue()
    return value is not None and bool(str(value).strip())


def parse_bands(text: str) -> tuple[int, ...] | None:
    """The core's band rule (options.parse_bands), its error as a Processing error."""
    try:
        return _parse_bands(text)
    except ValueError as exc:
        raise QgsProcessingException(f"Bands {exc}") from None


class FuseAlgorithm(QgsProcessingAlgorithm):
    INPUTS = "INPUTS"
    OUTPUT = "OUTPUT"
    SEGMENTATION = "SEGMENTATION"
    QUALITY = "QUALITY"
    VECTORS = "VECTORS"
    MIN_AREA = "MIN_AREA"
    METHOD = "METHOD"
    WEIGHTS = "WEIGHTS"
    DEVICE = "DEVICE"
    OVERLAP = "OVERLAP"
    BATCH_SIZE = "BATCH_SIZE"
    BANDS = "BANDS"
    SCALE = "SCALE"
    EVIDENCE = "EVIDENCE"
    REFERENCE = "REFERENCE"
    COG = "COG"
    ALLOW_LARGE = "ALLOW_LARGE"
    SELECTION = "SELECTION"
    SELECTION_INDEX = "SELECTION_INDEX"
    FORCE_SEGMENTATION = "FORCE_SEGMENTATION"
    MASKS = "MASKS"
    MASK_RULE = "MASK_RULE"
    MASK_NUMBERS = "MASK_NUMBERS"
    MASK_FALLBACK = "MASK_FALLBACK"
    # The mask rules offered, in the enum's order (stored as indexes: new ones go last)
    MASK_RULES = (("s2-scl", "Sentinel-2 SCL classes 0,1,3,8,9,10"),
                  ("landsat-qa", "Landsat QA_PIXEL bits 0-4"),
                  ("values", "Class values (listed below)"),
                  ("bits", "Bit numbers (listed below)"))

    def createInstance(self) -> FuseAlgorithm:  # noqa: N802
        return FuseAlgorithm()

    def name(self) -> str:
        return "fuse"

    def displayName(self) -> str:  # noqa: N802
        return "Fuse overhead images"

    def shortHelpString(self) -> str:  # noqa: N802
        """The help, headed by a notice when packages are missing (seen before Run)."""
        dependencies.activate_private_dir()
        lacking = dependencies.missing()
        if not lacking:
            return HELP
        composite = [m for m in lacking if m in dependencies.COMPOSITE_MODULES]
        scope = "This algorithm cannot run" if composite else \
            "The learned method and the segmentation cannot run (mean, median and min-blue can)"
        return (f"<p style='color:#b00020'><b>Missing Python packages: {', '.join(lacking)}.</b> "
                f"{scope} until they are installed: run <i>wsfusion ▸ Install Python "
                "dependencies</i> in the Processing toolbox (or Raster ▸ wsfusion).</p>" + HELP)

    def helpUrl(self) -> str:  # noqa: N802
        return HELP_URL

    def tags(self) -> list[str]:
        return ["fusion", "cloud", "composite", "mosaic", "deep learning", "segmentation",
                "roads", "buildings", "satellite", "aerial"]

    def icon(self) -> QIcon:
        return QIcon(str(ICON))

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802
        inputs = QgsProcessingParameterMultipleLayers(
            self.INPUTS, "Input images (local rasters, same area)", QgsProcessing.TypeRaster)
        inputs.setMinimumNumberInputs(1)
        self.addParameter(inputs)
        self.addParameter(QgsProcessingParameterEnum(
            self.METHOD, "Fusion method", options=[METHOD_LABELS.get(m, m) for m in METHODS],
            defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum(
            self.SELECTION, "Selection",
            options=[SELECTION_LABELS.get(s, s) for s in SELECTIONS], defaultValue=0))
        self.addParameter(QgsProcessingParameterFile(
            self.WEIGHTS, "Model weights (empty: shipped)",
            behavior=QgsProcessingParameterFile.File, extension="safetensors", optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.DEVICE, "Device", options=list(DEVICES), defaultValue=0))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.MASKS, "Sensor masks (one per input)",
            QgsProcessing.TypeRaster, optional=True))

        advanced = [
            QgsProcessingParameterNumber(self.OVERLAP, "Tile overlap (pixels)",
                                         QgsProcessingParameterNumber.Integer, DEFAULT_OVERLAP,
                                         False, 0, 4096),
            QgsProcessingParameterNumber(self.BATCH_SIZE, "Batch size (0: automatic)",
                                         QgsProcessingParameterNumber.Integer, 0, False, 0, 1024),
            QgsProcessingParameterString(
                self.BANDS, "Network bands (e.g. 1,2,3)", defaultValue="",
                optional=True),
            QgsProcessingParameterString(
                self.SCALE, "Radiometric scale (auto, s2, …)", defaultValue="auto",
                optional=True),
            # wsfusion_core.evidence: auto (recognised Sentinel-2 / Landsat stacks use their
            # shipped model and its cirrus / SWIR / aerosol bands), none, or band numbers
            QgsProcessingParameterString(
                self.EVIDENCE, "Evidence bands (auto, none, …)",
                defaultValue="auto", optional=True),
            QgsProcessingParameterRasterLayer(
                self.REFERENCE, "Output grid from layer",
                optional=True),
            QgsProcessingParameterBoolean(self.COG, "Write Cloud Optimized GeoTIFFs", False),
            # the core refuses an output grid far beyond the data or the free disk space
            QgsProcessingParameterBoolean(self.ALLOW_LARGE, "Allow a very large output", False),
            QgsProcessingParameterNumber(self.MIN_AREA, "Minimum mapping unit of the vectors "
                                         "(m²)", QgsProcessingParameterNumber.Double,
                                         DEFAULT_MIN_AREA, False, 0.0),
            QgsProcessingParameterEnum(
                self.MASK_RULE, "Sensor mask rule", options=[t for _, t in self.MASK_RULES],
                defaultValue=0),
            QgsProcessingParameterString(
                self.MASK_NUMBERS, "Mask values or bits (e.g. 3,8,9,10)",
                defaultValue="", optional=True),
            QgsProcessingParameterBoolean(
                self.MASK_FALLBACK, "All masked: use the least-masked input", False),
            QgsProcessingParameterBoolean(
                self.FORCE_SEGMENTATION, "Segmentation at any ground resolution", False),
        ]
        for p in advanced:
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)

        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Fused image"))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.SEGMENTATION, "Segmentation (roads, buildings)", optional=True,
            createByDefault=False))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.QUALITY, "Per-input quality weights", optional=True,
            createByDefault=False))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.SELECTION_INDEX, "Input index (selection Best)", optional=True,
            createByDefault=False))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.VECTORS, "Vectors (GeoPackage)", QgsProcessing.TypeVectorPolygon,
            optional=True, createByDefault=False))

    def checkParameterValues(self, parameters: dict, context) -> tuple[bool, str]:  # noqa: N802
        """Missing packages, then the offending layer (instead of Processing's 'Incorrect
        parameter value'): both said before anything runs."""
        lacking = self._missing_for(parameters, context)
        if lacking:
            return False, dependencies.missing_message(lacking)
        raw = parameters.get(self.INPUTS)
        values = raw if isinstance(raw, (list, tuple)) else ([raw] if raw else [])
        for value in values:
            if isinstance(value, QgsMapLayer):
                layer = value
            elif isinstance(value, str):
                layer = QgsProcessingUtils.mapLayerFromString(value, context)
            else:  # expressions, properties: let Processing evaluate them
                continue
            try:
                local_raster_path(layer, str(value))
            except QgsProcessingException as exc:
                return False, str(exc)
        return super().checkParameterValues(parameters, context)

    def _missing_for(self, parameters: dict, context, import_modules: bool = False) -> list[str]:
        """The packages this run needs and lacks: composites without segmentation need no torch."""
        dependencies.activate_private_dir()  # installed from a shell since QGIS started?
        method = METHODS[self.parameterAsEnum(parameters, self.METHOD, context)]
        wants_seg = _given(parameters.get(self.SEGMENTATION)) or \
            _given(parameters.get(self.VECTORS))
        modules = dependencies.required_modules("learned" if wants_seg else method)
        return dependencies.missing(import_modules=import_modules, modules=modules)

    def processAlgorithm(self, parameters: dict, context, feedback) -> dict[str, Any]:  # noqa: N802
        dependencies.activate_private_dir()
        lacking = self._missing_for(parameters, context, import_modules=True)
        if lacking:
            raise QgsProcessingException(dependencies.missing_message(lacking))

        layers = self.parameterAsLayerList(parameters, self.INPUTS, context)
        if not layers:
            raise QgsProcessingException("No input layers: choose one or more raster layers")
        inputs = [local_raster_path(layer, layer.name()) for layer in layers]
        ref_layer = self.parameterAsRasterLayer(parameters, self.REFERENCE, context)
        reference = local_raster_path(ref_layer, "reference") if ref_layer is not None else None
        masks, rule = self._masks(parameters, context)
        remote = sorted({remote_pattern(p, p) for p in [*inputs, reference, *(masks or [])]
                         if p is not None and not os.path.isfile(p)})
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        segmentation = self.parameterAsOutputLayer(parameters, self.SEGMENTATION, context) or None
        quality = self.parameterAsOutputLayer(parameters, self.QUALITY, context) or None
        index = self.parameterAsOutputLayer(parameters, self.SELECTION_INDEX, context) or None
        vectors = self.parameterAsOutputLayer(parameters, self.VECTORS, context) or None
        if vectors and not vectors.lower().endswith(".gpkg"):
            raise QgsProcessingException(f"Vectors: {vectors} must be a GeoPackage (.gpkg)")
        for label, path in (("Fused image", output), ("Segmentation", segmentation),
                            ("Quality weights", quality), ("Input index", index)):
            if path and not path.lower().endswith(GEOTIFF_SUFFIXES):
                raise QgsProcessingException(f"{label}: {path} must be a GeoTIFF (.tif)")
        method = METHODS[self.parameterAsEnum(parameters, self.METHOD, context)]
        batch = self.parameterAsInt(parameters, self.BATCH_SIZE, context)
        selection = SELECTIONS[self.parameterAsEnum(parameters, self.SELECTION, context)]
        options = dict(
            segmentation=segmentation, quality=quality, method=method, selection=selection,
            selection_index=index, vectors=vectors,
            min_area=self.parameterAsDouble(parameters, self.MIN_AREA, context),
            weights=self.parameterAsFile(parameters, self.WEIGHTS, context) or None,
            device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
            batch_size=batch if batch > 0 else None,
            overlap=self.parameterAsInt(parameters, self.OVERLAP, context),
            bands=parse_bands(self.parameterAsString(parameters, self.BANDS, context)),
            # parsed by wsfusion_core.view.parse_scale, like --scale (errors: one clear line)
            scale=self.parameterAsString(parameters, self.SCALE, context) or "auto",
            # parsed by wsfusion_core.evidence.parse_evidence (errors: one clear line)
            evidence_bands=self.parameterAsString(parameters, self.EVIDENCE, context) or "auto",
            reference=reference,
            cog=self.parameterAsBool(parameters, self.COG, context),
            allow_large=self.parameterAsBool(parameters, self.ALLOW_LARGE, context),
            allow_remote=remote,
            force_segmentation=self.parameterAsBool(parameters, self.FORCE_SEGMENTATION,
                                                    context),
            masks=masks, mask_rule=rule,
            mask_fallback="least-masked" if masks and self.parameterAsBool(
                parameters, self.MASK_FALLBACK, context) else None,
        )

        import wsfusion_core
        from wsfusion_core import fuse
        from wsfusion_core.errors import Cancelled, WsfusionError

        feedback.pushInfo(f"wsfusion_core {wsfusion_core.__version__} from "
                          f"{os.path.dirname(wsfusion_core.__file__)}")
        feedback.pushInfo(f"Fusing {len(inputs)} image(s) with method '{method}'"
                          + (", best-pixel selection" if selection == "best" else ""))
        if remote:
            feedback.pushInfo(f"Remote layers read from {', '.join(remote)}")
        try:
            result = fuse(
                inputs, output, **options,
                overwrite=True,  # Processing has already asked the user about existing files
                progress=lambda f: feedback.setProgress(100.0 * f),
                cancel=feedback.isCanceled,
                log=feedback.pushInfo,
            )
        except Cancelled:
            feedback.pushInfo("Cancelled: no output was written")
            self._forget_outputs(context, (output, segmentation, quality, index, vectors), ())
            return {}
        except WsfusionError as exc:
            raise QgsProcessingException(str(exc)) from None

        for text in result.warnings:  # e.g. the resolution guard left the class map out
            feedback.pushWarning(text)
        feedback.pushInfo(
            f"Done: {result.width}×{result.height} px, {result.count} band(s), CRS {result.crs}, "
            f"{result.tiles} tile(s) in {result.seconds:.1f} s on {result.device}; "
            f"model: {result.model or 'none (' + result.method + ' composite)'}")
        needs_net = method == "learned" or segmentation is not None or vectors is not None
        feedback.pushInfo(f"Device: {result.device} ("
                          f"{device_reason(options['device'], result.device, needs_net)})")
        written = [str(p) for p in (result.output, result.segmentation, result.quality,
                                    result.selection_index) if p]
        # batch mode registers skipped optional outputs under an empty name: drop them; the
        # GeoPackage is loaded as its class layers instead of as one file (below)
        load_vectors = vectors is not None and context.willLoadLayerOnCompletion(vectors)
        vec_details = context.layerToLoadOnCompletionDetails(vectors) if load_vectors else None
        self._forget_outputs(context, (output, segmentation, quality, index, vectors), written)
        if result.vectors is not None and vec_details is not None:
            self._load_vector_layers(context, str(result.vectors), result, vec_details.project)
        if result.segmentation is not None and context.willLoadLayerOnCompletion(segmentation):
            context.layerToLoadOnCompletionDetails(segmentation).setPostProcessor(
                SegmentationStyler.create())
        if result.selection_index is not None and context.willLoadLayerOnCompletion(index):
            context.layerToLoadOnCompletionDetails(index).setPostProcessor(
                IndexStyler.create())
        return {
            self.OUTPUT: str(result.output),
            self.SEGMENTATION: str(result.segmentation) if result.segmentation else None,
            self.QUALITY: str(result.quality) if result.quality else None,
            self.SELECTION_INDEX: str(result.selection_index) if result.selection_index
            else None,
            self.VECTORS: str(result.vectors) if result.vectors else None,
        }

    def _load_vector_layers(self, context, path: str, result, project) -> None:
        """One map layer per class layer of the GeoPackage, styled in the class colour."""
        from qgis.core import QgsProcessingContext

        from wsfusion_core.vectors import mapped_classes

        for cls in mapped_classes(result.class_names, result.class_colours):
            uri = f"{path}|layername={cls.name}"
            details = QgsProcessingContext.LayerDetails(cls.name, project, self.VECTORS)
            details.setPostProcessor(VectorStyler.create(cls.colour))
            context.addLayerToLoadOnCompletion(uri, details)

    def _masks(self, parameters: dict, context) -> tuple[list[str] | None, Any]:
        """The mask layers' paths and the rule (wsfusion_core.masks), as --mask-file and
        --mask / --mask-values / --mask-bits give them on the command line."""
        from wsfusion_core.errors import WsfusionError
        from wsfusion_core.masks import mask_rule, parse_numbers

        layers = self.parameterAsLayerList(parameters, self.MASKS, context)
        if not layers:
            return None, None
        paths = [local_raster_path(layer, layer.name()) for layer in layers]
        kind = self.MASK_RULES[self.parameterAsEnum(parameters, self.MASK_RULE, context)][0]
        if kind in ("s2-scl", "landsat-qa"):
            return paths, mask_rule(kind)
        text = self.parameterAsString(parameters, self.MASK_NUMBERS, context)
        try:
            numbers = parse_numbers(text, "class values" if kind == "values" else "bit numbers")
            return paths, (mask_rule(values=numbers) if kind == "values"
                           else mask_rule(bits=numbers))
        except (ValueError, WsfusionError) as exc:
            raise QgsProcessingException(f"Sensor mask rule: {exc}") from None

    @staticmethod
    def _forget_outputs(context, paths, written) -> None:
        """Keep Processing from reporting outputs that were not written (after a cancel, or an
        optional output left empty, which batch mode registers as '') as missing layers."""
        pending = context.layersToLoadOnCompletion()
        for p in [*paths, ""]:
            if p is not None and p not in written:
                pending.pop(p, None)
        context.setLayersToLoadOnCompletion(pending)
