"""The single source of the data splits: which tiles, Banepa columns and cloud sources train,
validate and test, and the paper's evaluation scenarios. Everything else imports from here."""

from __future__ import annotations

# Dubai (../shared/data/segmentation/dubai): tile numbers.
TRAIN_TILES: tuple[int, ...] = (1, 2, 3, 4, 5)
VAL_TILES: tuple[int, ...] = (6,)
TEST_TILES: tuple[int, ...] = (7,)

# Banepa (../shared/data/segmentation/banepa): the web-tile mosaic is split by tile column
# (x index at zoom 19); the last column is validation, so the two never share a building.
BANEPA_VAL_COLUMNS: tuple[int, ...] = (386695,)

# Cloud sources (../shared/data/clouds). The real-cloud validation scenes
# (real_clouds/sen12mscr_pairs, real_clouds/landsat_ts_fmask) are never trained on.
CLOUD_SOURCES: tuple[str, ...] = ("ukis_sentinel2", "ukis_landsat7", "cloud38", "eolearn")
TRAIN_CLOUDS: tuple[str, ...] = ("ukis_sentinel2", "eolearn")
VAL_CLOUDS: tuple[str, ...] = ("ukis_landsat7",)
TEST_CLOUDS: tuple[str, ...] = ("cloud38",)

# The paper's scenarios (§4.2): name → (K, share of artifacts per input).
SCENARIOS: dict[str, tuple[int, float]] = {"S1": (2, 0.25), "S2": (6, 0.5)}
