"""Remote inputs (``--allow-remote``): refused by default, read in place when their host is
allowed, and the output is byte for byte the local run's.

Real parts: GeoTIFFs served by a local HTTP server with Range support on 127.0.0.1 (GDAL's
``/vsicurl/`` reads byte ranges; nothing is fetched from the internet), the real CLI, a STAC
ItemCollection written with pystac, and a real ``LocalCluster`` of two worker processes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from helpers import DEFAULT_TRANSFORM, PIXEL, smooth_image, write_raster
from rangeserver import RangeServer
from rasterio.transform import from_origin

from wsfusion_core import cli
from wsfusion_core.api import fuse
from wsfusion_core.errors import InputError, WsfusionError
from wsfusion_core.remote import RemoteRefused, matches, parse_remote, patterns

H, W = 300, 400
LOCALHOST = ("127.0.0.1",)


@pytest.fixture
def served(tmp_path):
    """Three dates (one with a nodata gap, one in another CRS: warped) in ``tmp/srv``, served
    over HTTP; yields (server, local paths)."""
    folder = tmp_path / "srv"
    folder.mkdir()
    b = smooth_image(H, W, seed=2)
    b[:, 60:140, 100:250] = 0
    files = [write_raster(folder / "a.tif", smooth_image(H, W, seed=1)),
             write_raster(folder / "b.tif", b, nodata=0),
             write_raster(folder / "c.tif", smooth_image(H - 40, W - 40, seed=5),
                          crs="EPSG:32617", transform=from_origin(1039000, 4018000, 11, 11),
                          nodata=0)]
    with RangeServer(folder) as srv:
        yield srv, files


def urls(srv: RangeServer, files: list[Path]) -> list[str]:
    return [srv.url(f.name) for f in files]


def run_cli(*args) -> tuple[int, str]:
    res = CliRunner().invoke(cli.main, ["fuse", *[str(a) for a in args], "-q"])
    return res.exit_code, res.output


def error_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("Error:")]


def same_bytes(*paths: Path) -> bool:
    first = paths[0].read_bytes()
    return all(p.read_bytes() == first for p in paths[1:])


def vrt_of(path: Path, source: str) -> Path:
    """A VRT of band 1-3 of a 300 x 400 uint8 ``source`` (a local path or a URL)."""
    bands = "".join(f"""
  <VRTRasterBand dataType="Byte" band="{b}"><SimpleSource>
    <SourceFilename relativeToVRT="0">{source}</SourceFilename><SourceBand>{b}</SourceBand>
  </SimpleSource></VRTRasterBand>""" for b in (1, 2, 3))
    t = DEFAULT_TRANSFORM
    path.write_text(f"""<VRTDataset rasterXSize="{W}" rasterYSize="{H}">
  <SRS>EPSG:32618</SRS><GeoTransform>{t.c}, {t.a}, 0, {t.f}, 0, {t.e}</GeoTransform>{bands}
</VRTDataset>""")
    return path


# ----------------------------------------------------------------------------- the rule


def test_patterns_match_hosts_buckets_and_schemes():
    url = parse_remote("https://Data.Example.org:8443/x/a.tif")
    assert url is not None and url.gdal == "/vsicurl/https://Data.Example.org:8443/x/a.tif"
    assert url.authority == "data.example.org:8443" and url.host == "data.example.org"
    s3 = parse_remote("s3://my-bucket/key/a.tif")
    assert s3 is not None and s3.gdal == "/vsis3/my-bucket/key/a.tif"
    assert s3.authority == "my-bucket"
    assert parse_remote("/vsigs/b/k.tif").scheme == "gs"  # type: ignore[union-attr]
    assert parse_remote("/tmp/local.tif") is None and parse_remote("rel/a.tif") is None

    assert matches(url, patterns("data.example.org"))
    assert matches(url, patterns(["*.example.org"])) and matches(url, patterns("*"))
    assert matches(url, patterns("https://data.example.org:8443"))
    assert not matches(url, patterns("http://data.example.org"))  # another scheme
    assert not matches(url, patterns("data.example.org:80"))  # another port
    assert not matches(url, patterns("example.org"))
    assert matches(s3, patterns("s3://my-bucket")) and matches(s3, patterns("my-bucket"))
    assert not matches(s3, patterns("gs://my-bucket")) and not matches(s3, patterns(()))
    for bad in ("ftp://host", "host/path", "", "s3://"):
        with pytest.raises(WsfusionError, match="remote pattern"):
            patterns(bad)


@pytest.mark.parametrize("name, words", [
    ("/vsimem/a.tif", "/vsimem/ is not read"),
    ("/vsizip//vsicurl/http://127.0.0.1/a.zip/a.tif", "/vsizip/ is not read"),
    ("/vsicurl_streaming/http://127.0.0.1/a.tif", "/vsicurl_streaming/ is not read"),
    ("/vsisubfile/0_100,/tmp/a.tif", "/vsisubfile/ is not read"),
    ("http://user:secret@127.0.0.1/a.tif", "credentials in a URL are refused"),
    ("/vsis3/bucket-only", "names no bucket and object"),
])
def test_other_remote_names_stay_refused_even_with_every_host_allowed(tmp_path, name, words):
    with pytest.raises(InputError) as err:
        fuse([name], tmp_path / "o.tif", method="mean", allow_remote="*")
    text = str(err.value)
    assert words in text and "\n" not in text
    assert not (tmp_path / "o.tif").exists()


def test_dot_segments_cannot_leave_an_allowed_bucket(tmp_path):
    """GDAL sends an object key as it is and curl removes ``..`` segments from the path: with a
    path-style endpoint (GCS, MinIO, AWS_VIRTUAL_HOSTING=FALSE) ``s3://allowed/../evil/a.tif``
    would read bucket ``evil`` with the user's credentials. Served locally as such an endpoint."""
    folder = tmp_path / "srv"
    (folder / "evil").mkdir(parents=True)
    write_raster(folder / "evil" / "a.tif", smooth_image(H, W, seed=1))
    with RangeServer(folder) as srv, rasterio.Env(
            AWS_S3_ENDPOINT=f"127.0.0.1:{srv.port}", AWS_HTTPS="NO", AWS_VIRTUAL_HOSTING="FALSE",
            AWS_NO_SIGN_REQUEST="YES"):
        for name in ("s3://allowed/../evil/a.tif", "/vsis3/allowed/x/../../evil/a.tif",
                     "s3://allowed/./a.tif"):
            with pytest.raises(InputError, match="segments are refused") as err:
                fuse([name], tmp_path / "o.tif", method="mean", allow_remote="s3://allowed")
            assert "\n" not in str(err.value)
        assert srv.requests == []
    assert not (tmp_path / "o.tif").exists()


# ----------------------------------------------------------------------------- over HTTP


def test_remote_input_is_refused_without_the_opt_in(tmp_path, served):
    srv, files = served
    remote = urls(srv, files)
    with pytest.raises(RemoteRefused) as err:
        fuse(remote, tmp_path / "o.tif", method="mean")
    assert str(err.value).startswith(f"{remote[0]}: remote input refused")
    assert "host 127.0.0.1:" in str(err.value) and "\n" not in str(err.value)
    assert "--allow-remote" not in str(err.value)  # the core names no CLI flag

    code, text = run_cli(*remote, "-o", tmp_path / "o.tif", "--method", "mean")
    lines = error_lines(text)
    assert code == 1 and len(lines) == 1 and remote[0] in lines[0]
    assert lines[0].endswith("allow its host with --allow-remote 127.0.0.1")
    assert not (tmp_path / "o.tif").exists() and srv.requests == []  # nothing was fetched


def test_allowed_remote_inputs_give_the_local_output_byte_for_byte(tmp_path, served,
                                                                   random_weights):
    srv, files = served
    remote = urls(srv, files)
    remote[1] = "/vsicurl/" + remote[1]  # both spellings
    outs = {}
    for name, inputs, allow in (("local", files, None), ("remote", remote, LOCALHOST)):
        outs[name] = [tmp_path / f"{name}{k}.tif" for k in ("", "_seg", "_q")]
        fuse(inputs, outs[name][0], segmentation=outs[name][1], quality=outs[name][2],
             weights=random_weights, device="cpu", allow_remote=allow)
    for local, remote_out in zip(outs["local"][:2], outs["remote"][:2]):
        assert same_bytes(local, remote_out), local.name
    # the quality output records each input's full name: the URL here, as given
    with rasterio.open(outs["local"][2]) as x, rasterio.open(outs["remote"][2]) as y:
        assert np.array_equal(x.read(), y.read(), equal_nan=True)
        assert [y.tags(i)["INPUT"] for i in (1, 2, 3)] == remote
        assert x.descriptions == y.descriptions and x.tags() == y.tags()
    assert srv.requests and all(r.lstrip("/") in {"a.tif", "b.tif", "c.tif"}
                                for r in srv.requests)  # no sidecar or listing requests


def test_a_host_not_in_the_list_is_refused(tmp_path, served):
    srv, files = served
    remote = urls(srv, files)
    for allow in (("example.org",), ("127.0.0.1:1",), ("s3://127.0.0.1",), ("https://*",)):
        with pytest.raises(RemoteRefused, match="remote input refused"):
            fuse(remote, tmp_path / "o.tif", method="mean", allow_remote=allow)
    # one allowed host does not open the door for the reference
    with pytest.raises(RemoteRefused):
        fuse(files[:2], tmp_path / "o.tif", method="mean", reference=remote[0])
    assert not (tmp_path / "o.tif").exists()


def test_a_local_vrt_reads_allowed_remote_sources_only(tmp_path, served):
    srv, files = served
    local_vrt = vrt_of(tmp_path / "local.vrt", str(files[0]))
    remote_vrt = vrt_of(tmp_path / "remote.vrt", "/vsicurl/" + srv.url("a.tif"))
    fuse([local_vrt, files[1]], tmp_path / "l.tif", method="mean")
    fuse([remote_vrt, files[1]], tmp_path / "r.tif", method="mean", allow_remote=LOCALHOST)
    with rasterio.open(tmp_path / "l.tif") as a, rasterio.open(tmp_path / "r.tif") as b:
        assert np.array_equal(a.read(), b.read())

    for allow in (None, ("example.org",)):
        with pytest.raises(RemoteRefused) as err:
            fuse([remote_vrt, files[1]], tmp_path / "x.tif", method="mean", allow_remote=allow)
        text = str(err.value)
        assert text.startswith(f"{remote_vrt}: VRT source /vsicurl/{srv.url('a.tif')} is "
                               "remote and refused") and "\n" not in text
    plain = vrt_of(tmp_path / "plain.vrt", srv.url("a.tif"))  # http:// without /vsicurl/
    with pytest.raises(RemoteRefused):
        fuse([plain, files[1]], tmp_path / "x.tif", method="mean")
    assert not (tmp_path / "x.tif").exists()


def test_a_remote_vrt_is_refused_even_from_an_allowed_host(tmp_path, served):
    """Its XML could name local files or other hosts and is not checked before GDAL reads it."""
    srv, files = served
    vrt_of(files[0].parent / "v.vrt", str(files[0]))
    for inputs in ([srv.url("v.vrt"), files[1]],
                   [vrt_of(tmp_path / "nested.vrt", "/vsicurl/" + srv.url("v.vrt")), files[1]]):
        with pytest.raises(InputError,
                           match="remote VRTs, tile indexes and multi-file formats are refused"):
            fuse(inputs, tmp_path / "o.tif", method="mean", allow_remote=LOCALHOST)
    assert not (tmp_path / "o.tif").exists()


def test_cli_allow_remote(tmp_path, served):
    srv, files = served
    code, text = run_cli(*files, "-o", tmp_path / "local.tif", "--method", "mean")
    assert code == 0, text
    code, text = run_cli(*urls(srv, files), "-o", tmp_path / "remote.tif", "--method", "mean",
                         "--allow-remote", "example.org", "--allow-remote", "127.0.0.1")
    assert code == 0, text
    assert same_bytes(tmp_path / "local.tif", tmp_path / "remote.tif")
    code, text = run_cli(*urls(srv, files), "-o", tmp_path / "x.tif", "--allow-remote", "a/b")
    assert code == 1 and len(error_lines(text)) == 1 and "remote pattern 'a/b'" in text
    # info reads remote inputs by the same rule
    res = CliRunner().invoke(cli.main, ["info", *urls(srv, files)])
    assert res.exit_code == 1 and "--allow-remote 127.0.0.1" in res.output
    res = CliRunner().invoke(cli.main, ["info", *urls(srv, files), "--allow-remote", "*"])
    assert res.exit_code == 0 and srv.url("c.tif") in res.output, res.output


def test_stac_with_http_hrefs(tmp_path, served):
    """Date 1 as two items over HTTP (a mosaic VRT of remote sources), date 2 as one."""
    pystac = pytest.importorskip("pystac")
    srv, files = served
    folder = files[0].parent
    a = smooth_image(H, W, seed=1)
    for name, part, x0 in (("left", a[:, :, :W // 2], 0), ("right", a[:, :, W // 2:], W // 2)):
        write_raster(folder / f"{name}.tif", part, transform=from_origin(
            DEFAULT_TRANSFORM.c + x0 * PIXEL, DEFAULT_TRANSFORM.f, PIXEL, PIXEL))
    d1 = dt.datetime(2024, 6, 1, 15, 50, tzinfo=dt.timezone.utc)
    items = []
    for name, when in (("left", d1), ("right", d1), ("b", d1 + dt.timedelta(days=30))):
        it = pystac.Item(id=name, geometry=None, bbox=[-75.1, 36.0, -75.0, 36.1],
                         datetime=when, properties={})
        it.add_asset("visual", pystac.Asset(href=srv.url(f"{name}.tif")))
        items.append(it)
    stac = tmp_path / "items.json"
    stac.write_text(json.dumps(pystac.ItemCollection(items).to_dict(transform_hrefs=False)))

    code, text = run_cli("--stac", stac, "-o", tmp_path / "s.tif", "--method", "mean")
    lines = error_lines(text)
    assert code == 1 and len(lines) == 1 and "is remote" in lines[0]
    assert lines[0].endswith("--allow-remote 127.0.0.1") and srv.requests == []

    code, text = run_cli("--stac", stac, "-o", tmp_path / "s.tif", "--method", "mean",
                         "--allow-remote", "127.0.0.1")
    assert code == 0, text
    fuse([files[0], files[1]], tmp_path / "l.tif", method="mean")
    with rasterio.open(tmp_path / "l.tif") as x, rasterio.open(tmp_path / "s.tif") as y:
        assert np.array_equal(x.read(), y.read())
    assert not (tmp_path / ".s.tif.inputs").exists()


def test_local_cluster_reads_remote_inputs(tmp_path, served, random_weights):
    pytest.importorskip("distributed")
    import torch
    from distributed import Client, LocalCluster

    srv, files = served
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' setting, for an exact comparison
    try:
        fuse(files, tmp_path / "local.tif", segmentation=tmp_path / "local_seg.tif",
             weights=random_weights, device="cpu")
    finally:
        torch.set_num_threads(before)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as lc, Client(lc) as client:
        res = fuse(["/vsicurl/" + u for u in urls(srv, files)], tmp_path / "c.tif",
                   segmentation=tmp_path / "c_seg.tif",
                   weights=random_weights, device="cpu", cluster=client, chunk=256,
                   allow_remote=LOCALHOST)
    assert res.chunks.workers == 2 and res.chunks.chunks == 4
    assert same_bytes(tmp_path / "local.tif", tmp_path / "c.tif")
    assert same_bytes(tmp_path / "local_seg.tif", tmp_path / "c_seg.tif")


# ----------------------------------------------------------------------------- GTI


def tile_index(folder: Path, tiles: list[Path], name: str = "idx.gti.gpkg") -> Path:
    """A GeoPackage tile index of ``tiles`` (relative locations) made by gdaltindex."""
    import shutil
    import subprocess

    tool = shutil.which("gdaltindex")
    if tool is None:
        pytest.skip("gdaltindex (GDAL's command line tools) is not installed")
    out = folder / name
    subprocess.run([tool, "-f", "GPKG", out.name, *[t.name for t in tiles]], cwd=folder,
                   check=True, capture_output=True)
    return out


def set_locations(index: Path, locations: list[str]) -> None:
    import sqlite3

    con = sqlite3.connect(index)
    with con:
        # the R-tree triggers call SpatiaLite functions; the geometries do not change
        for (trigger,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"
                                      ).fetchall():
            con.execute(f'DROP TRIGGER "{trigger}"')
        table = con.execute("SELECT table_name FROM gpkg_contents").fetchone()[0]
        fids = [r[0] for r in con.execute(f'SELECT fid FROM "{table}" ORDER BY fid')]
        for fid, loc in zip(fids, locations):
            con.execute(f'UPDATE "{table}" SET location = ? WHERE fid = ?', (loc, fid))
    con.close()


@pytest.fixture
def halves(tmp_path):
    """The left and right halves of one image as tiles, and the whole image."""
    a = smooth_image(H, W, seed=1)
    folder = tmp_path / "tiles"
    folder.mkdir()
    tiles = [write_raster(folder / "left.tif", a[:, :, :W // 2]),
             write_raster(folder / "right.tif", a[:, :, W // 2:], transform=from_origin(
                 DEFAULT_TRANSFORM.c + W // 2 * PIXEL, DEFAULT_TRANSFORM.f, PIXEL, PIXEL))]
    return tiles, write_raster(tmp_path / "whole.tif", a)


def test_a_gti_of_local_tiles_fuses_like_the_whole_image(tmp_path, halves):
    from wsfusion_core.tile_index import gti_available

    if not gti_available():
        pytest.skip(f"GDAL {rasterio.__gdal_version__} has no GTI driver (3.9 and later)")
    tiles, whole = halves
    index = tile_index(tiles[0].parent, tiles)
    other = write_raster(tmp_path / "other.tif", smooth_image(H, W, seed=7))
    fuse([index, other], tmp_path / "g.tif", method="mean")
    fuse([whole, other], tmp_path / "w.tif", method="mean")
    with rasterio.open(tmp_path / "g.tif") as x, rasterio.open(tmp_path / "w.tif") as y:
        assert np.array_equal(x.read(), y.read())


def test_gti_locations_are_checked_like_vrt_sources(tmp_path, halves, served):
    srv, _files = served
    tiles, _whole = halves
    index = tile_index(tiles[0].parent, tiles)
    other = tmp_path / "other.tif"
    write_raster(other, smooth_image(H, W, seed=7))
    # a location that is not a regular file
    fifo = tiles[0].parent / "pipe.tif"
    os.mkfifo(fifo)
    set_locations(index, ["pipe.tif", "right.tif"])
    with pytest.raises(InputError, match="tile index location refused: .*named pipe") as err:
        fuse([index, other], tmp_path / "o.tif", method="mean")
    assert err.value.path == index
    # remote locations: only from allowed hosts
    url = srv.url("a.tif")
    set_locations(index, [url, url])
    with pytest.raises(RemoteRefused, match=r"tile index location http://127\.0\.0\.1:\d+/a"):
        fuse([index, other], tmp_path / "o.tif", method="mean")
    with pytest.raises(RemoteRefused):
        fuse([index, other], tmp_path / "o.tif", method="mean", allow_remote="example.org")
    fuse([index, other], tmp_path / "o.tif", method="mean", allow_remote=LOCALHOST)
    # an index in a form whose files are not checked
    xml = tmp_path / "idx.gti"
    xml.write_text(f"<GDALTileIndexDataset><IndexDataset>{index}</IndexDataset>"
                   "</GDALTileIndexDataset>")
    with pytest.raises(InputError, match="only GeoPackage tile indexes"):
        fuse([xml, other], tmp_path / "x.tif", method="mean")
    # a VRT whose source is an index: the index's locations are checked too
    set_locations(index, [str(fifo), "right.tif"])
    vrt = vrt_of(tmp_path / "v.vrt", str(index))
    with pytest.raises(InputError, match="tile index location refused"):
        fuse([vrt, other], tmp_path / "x.tif", method="mean")
    assert not (tmp_path / "x.tif").exists()


def test_gti_locations_in_a_table_gpkg_contents_does_not_list_are_checked(tmp_path, halves,
                                                                        served):
    """GDAL's GeoPackage driver lists tables that gpkg_contents does not name (its
    LIST_ALL_TABLES=AUTO), and the GTI driver reads them: their locations are checked too, so an
    index cannot hide a host nobody allowed (GDAL fetched it while opening before the fix)."""
    import sqlite3

    srv, _files = served
    tiles, _whole = halves
    index = tile_index(tiles[0].parent, tiles)
    set_locations(index, [srv.url("a.tif"), srv.url("a.tif")])
    con = sqlite3.connect(index)
    with con:
        con.execute("DELETE FROM gpkg_contents")
    con.close()
    other = write_raster(tmp_path / "other.tif", smooth_image(H, W, seed=7))
    with pytest.raises(RemoteRefused, match="tile index location"):
        fuse([index, other], tmp_path / "o.tif", method="mean")
    assert srv.requests == []
    assert not (tmp_path / "o.tif").exists()
