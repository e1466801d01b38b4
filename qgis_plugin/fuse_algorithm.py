"""The "Fuse overhead images" Processing algorithm: QGIS parameters in, ``wsfusion_core.fuse`` out.

A thin shell by design: it resolves layers to local files, calls the core once, and turns the
core's errors into ``QgsProcessingException``. All fusion logic lives in ``wsfusion_core``.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
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
    QgsProcessingUtils,
    QgsProviderRegistry,
    QgsRasterLayer,
)
from qgis.PyQt.QtGui import QColor, QIcon

from wsfusion_core.options import DEFAULT_OVERLAP, DEVICES, METHODS
from wsfusion_core.options import parse_bands as _parse_bands

from . import dependencies
from .resources import ICON

METHOD_LABELS = {"learned": "learned (quality network)"}  # others are shown as they are named
GEOTIFF_SUFFIXES = (".tif", ".tiff")

HELP = """<p>Fuses several overhead images of the same place, each spoiled in places by clouds, \
haze or missing data, into one clean image, and can map roads and buildings from it.</p>
<p><b>How it works.</b> With <i>learned</i> (the default), a small neural network looks at every \
input and scores each pixel for how usable it is; the scores are turned into weights that sum \
to one across the inputs at every pixel, and the output is the weighted average. Pixels that are \
nodata in an input get weight zero. The networks were trained only from road and building maps \
(Rafique, Blanton &amp; Jacobs, <i>Weakly Supervised Fusion of Multiple Overhead Images</i>). \
<i>mean</i> and <i>median</i> are simple per-pixel composites that need no model.</p>
<p><b>Inputs.</b> Two or more raster layers that are local files GDAL can read (GeoTIFF \
and the like), covering the same area, 8-bit RGB (other bands are ignored; choose them under \
<i>Bands</i>). They are aligned onto the grid of the first input (or the <i>Reference layer</i>). \
Web layers (WMS, XYZ) must first be saved to a GeoTIFF.</p>
<p><b>Outputs.</b> <i>Fused image</i>: a GeoTIFF on the reference grid with the fused bands. \
<i>Segmentation</i> (optional): one byte band with 0 = background, 1 = road, 2 = building, \
styled with class colours; it needs a model. <i>Quality weights</i> (optional): one float band \
per input with that input's weight at each pixel (0 = not used, 1 = used alone).</p>
<p><b>Model</b>: leave empty to use the model shipped with the plugin, or pick a \
<tt>.safetensors</tt> file from <tt>wsfusion-train</tt>. <b>Device</b>: <i>auto</i> uses a \
CUDA GPU when PyTorch sees one.</p>
<p>Needs the Python packages torch and rasterio; if they are missing, run \
<i>Install Python dependencies</i> from this provider.</p>"""


class SegmentationStyler(QgsProcessingLayerPostProcessorInterface):
    """Gives the segmentation output a paletted style with the class names and colours."""

    # Processing keeps only a raw pointer to post-processors: hold them here.
    _alive: list[SegmentationStyler] = []

    def __init__(self, names, colours) -> None:
        super().__init__()
        self.names = list(names)
        self.colours = [tuple(c) for c in colours]

    @classmethod
    def create(cls, names, colours) -> SegmentationStyler:
        styler = cls(names, colours)
        cls._alive.append(styler)
        return styler

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802
        if isinstance(layer, QgsRasterLayer):
            apply_segmentation_style(layer, self.names, self.colours)


def apply_segmentation_style(layer: QgsRasterLayer, names, colours) -> None:
    from qgis.core import QgsPalettedRasterRenderer

    classes = [QgsPalettedRasterRenderer.Class(i, QColor(*rgb), name)
               for i, (name, rgb) in enumerate(zip(names, colours))]
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))
    layer.triggerRepaint()


def local_raster_path(layer: QgsMapLayer | None, label: str) -> str:
    """The file behind a raster layer, or a QgsProcessingException that names the layer."""
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
    METHOD = "METHOD"
    WEIGHTS = "WEIGHTS"
    DEVICE = "DEVICE"
    OVERLAP = "OVERLAP"
    BATCH_SIZE = "BATCH_SIZE"
    BANDS = "BANDS"
    REFERENCE = "REFERENCE"
    COG = "COG"

    def createInstance(self) -> FuseAlgorithm:  # noqa: N802
        return FuseAlgorithm()

    def name(self) -> str:
        return "fuse"

    def displayName(self) -> str:  # noqa: N802
        return "Fuse overhead images"

    def shortHelpString(self) -> str:  # noqa: N802
        return HELP

    def tags(self) -> list[str]:
        return ["fusion", "cloud", "composite", "mosaic", "deep learning", "segmentation",
                "roads", "buildings", "satellite", "aerial"]

    def icon(self) -> QIcon:
        return QIcon(str(ICON))

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802
        inputs = QgsProcessingParameterMultipleLayers(
            self.INPUTS, "Input images (same area, local raster files)", QgsProcessing.TypeRaster)
        inputs.setMinimumNumberInputs(1)
        self.addParameter(inputs)
        self.addParameter(QgsProcessingParameterEnum(
            self.METHOD, "Fusion method", options=[METHOD_LABELS.get(m, m) for m in METHODS],
            defaultValue=0))
        self.addParameter(QgsProcessingParameterFile(
            self.WEIGHTS, "Model weights (empty: the model shipped with the plugin)",
            behavior=QgsProcessingParameterFile.File, extension="safetensors", optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.DEVICE, "Device", options=list(DEVICES), defaultValue=0))

        advanced = [
            QgsProcessingParameterNumber(self.OVERLAP, "Tile overlap (pixels)",
                                         QgsProcessingParameterNumber.Integer, DEFAULT_OVERLAP,
                                         False, 0, 4096),
            QgsProcessingParameterNumber(self.BATCH_SIZE, "Batch size (0: automatic)",
                                         QgsProcessingParameterNumber.Integer, 0, False, 0, 1024),
            QgsProcessingParameterString(
                self.BANDS, "Bands fed to the networks (1-based, e.g. 1,2,3)", defaultValue="",
                optional=True),
            QgsProcessingParameterRasterLayer(
                self.REFERENCE, "Reference layer for the output grid (empty: first input)",
                optional=True),
            QgsProcessingParameterBoolean(self.COG, "Write Cloud Optimized GeoTIFFs", False),
        ]
        for p in advanced:
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)

        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Fused image"))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.SEGMENTATION, "Segmentation (roads, buildings)", optional=True,
            createByDefault=False))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.QUALITY, "Quality weights (one band per input)", optional=True,
            createByDefault=False))

    def checkParameterValues(self, parameters: dict, context) -> tuple[bool, str]:  # noqa: N802
        """Name the offending layer instead of Processing's 'Incorrect parameter value'."""
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

    def processAlgorithm(self, parameters: dict, context, feedback) -> dict[str, Any]:  # noqa: N802
        dependencies.activate_private_dir()  # installed from a shell since QGIS started?
        lacking = dependencies.missing(import_modules=True)
        if lacking:
            raise QgsProcessingException(dependencies.missing_message(lacking))

        layers = self.parameterAsLayerList(parameters, self.INPUTS, context)
        if not layers:
            raise QgsProcessingException("No input layers: choose one or more raster layers")
        inputs = [local_raster_path(layer, layer.name()) for layer in layers]
        ref_layer = self.parameterAsRasterLayer(parameters, self.REFERENCE, context)
        reference = local_raster_path(ref_layer, "reference") if ref_layer is not None else None
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        segmentation = self.parameterAsOutputLayer(parameters, self.SEGMENTATION, context) or None
        quality = self.parameterAsOutputLayer(parameters, self.QUALITY, context) or None
        for label, path in (("Fused image", output), ("Segmentation", segmentation),
                            ("Quality weights", quality)):
            if path and not path.lower().endswith(GEOTIFF_SUFFIXES):
                raise QgsProcessingException(f"{label}: {path} must be a GeoTIFF (.tif)")
        method = METHODS[self.parameterAsEnum(parameters, self.METHOD, context)]
        batch = self.parameterAsInt(parameters, self.BATCH_SIZE, context)
        options = dict(
            segmentation=segmentation, quality=quality, method=method,
            weights=self.parameterAsFile(parameters, self.WEIGHTS, context) or None,
            device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
            batch_size=batch if batch > 0 else None,
            overlap=self.parameterAsInt(parameters, self.OVERLAP, context),
            bands=parse_bands(self.parameterAsString(parameters, self.BANDS, context)),
            reference=reference,
            cog=self.parameterAsBool(parameters, self.COG, context),
        )

        import wsfusion_core
        from wsfusion_core import fuse
        from wsfusion_core.errors import Cancelled, WsfusionError

        feedback.pushInfo(f"wsfusion_core {wsfusion_core.__version__} from "
                          f"{os.path.dirname(wsfusion_core.__file__)}")
        feedback.pushInfo(f"Fusing {len(inputs)} image(s) with method '{method}'")
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
            self._forget_outputs(context, (output, segmentation, quality))
            return {}
        except WsfusionError as exc:
            raise QgsProcessingException(str(exc)) from None

        feedback.pushInfo(
            f"Done: {result.width}×{result.height} px, {result.count} band(s), CRS {result.crs}, "
            f"{result.tiles} tile(s) in {result.seconds:.1f} s on {result.device}; "
            f"model: {result.model or 'none (' + result.method + ' composite)'}")
        if result.segmentation is not None and context.willLoadLayerOnCompletion(segmentation):
            context.layerToLoadOnCompletionDetails(segmentation).setPostProcessor(
                SegmentationStyler.create(result.class_names, result.class_colours))
        return {
            self.OUTPUT: str(result.output),
            self.SEGMENTATION: str(result.segmentation) if result.segmentation else None,
            self.QUALITY: str(result.quality) if result.quality else None,
        }

    @staticmethod
    def _forget_outputs(context, paths) -> None:
        """After a cancel there is nothing to load: keep Processing from reporting missing files."""
        pending = context.layersToLoadOnCompletion()
        for p in paths:
            if p:
                pending.pop(p, None)
        context.setLayersToLoadOnCompletion(pending)
