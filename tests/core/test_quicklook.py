"""The quicklook PNG from real GeoTIFFs; inputs are opened through input_guard (one open each),
so a file that is not an accepted raster is one InputError naming it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from wsfusion_core import fuse
from wsfusion_core.errors import InputError
from wsfusion_core.quicklook import LABEL_H, quicklook


def test_quicklook_of_inputs_fused_and_weights(tmp_path, make_raster, smooth_image):
    a = make_raster(tmp_path / "a.tif", smooth_image(60, 90, dtype="uint16", seed=1), nodata=0)
    b = make_raster(tmp_path / "b.tif", smooth_image(60, 90, dtype="uint16", seed=2), nodata=0)
    fused, q = tmp_path / "f.tif", tmp_path / "q.tif"
    fuse([a, b], fused, quality=q, method="min-blue")
    png = quicklook([a, b], fused, tmp_path / "look.png", quality=q, max_side=45)
    with Image.open(png) as im:  # 3 panels over 2 weight panels, 45 x 30 each
        assert im.size == (3 * 45 + 2 * 6, 2 * (30 + LABEL_H) + 6)
        px = np.asarray(im)
    top = 30 + LABEL_H + 6 + LABEL_H  # second row's panels
    weight1 = px[top:top + 30, :45]  # min-blue's 0/1 choice: black or white
    assert set(np.unique(weight1)) == {0, 255}


def test_quicklook_names_an_input_that_is_not_a_raster(tmp_path, make_raster, smooth_image):
    a = make_raster(tmp_path / "a.tif", smooth_image(20, 20))
    text = tmp_path / "notes.tif"
    text.write_text("not a raster")
    with pytest.raises(InputError, match="notes.tif: not a raster"):
        quicklook([a, text], a, tmp_path / "look.png")
    assert not (tmp_path / "look.png").exists()
