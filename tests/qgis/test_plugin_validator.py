"""``make plugin``'s zip against the upload rules of plugins.qgis.org (qgis/QGIS-Django,
qgis-app/plugins/validator.py), reimplemented here: size, paths, forbidden folders, one top
folder with a valid name, __init__.py, metadata.txt with the required fields, LICENSE, author,
URL syntax. The site also fetches the URLs; that needs the network and is not checked here."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import pytest
from helpers import REPO

MAX_BYTES = 25_000_000
REQUIRED = ("name", "description", "version", "qgisMinimumVersion", "author", "email", "about",
            "tracker", "repository")
BOOLEAN = ("experimental", "deprecated", "server")
# What the project has no real value for yet (see metadata.txt): the publisher supplies them.
PUBLISHER_FIELDS = {"email", "tracker", "repository"}


def validate(path: Path) -> list[str]:
    """The rule violations plugins.qgis.org's upload validator would report (empty: accepted)."""
    problems = []
    if path.stat().st_size > MAX_BYTES:
        problems.append(f"larger than {MAX_BYTES} bytes")
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        for n in names:
            if ".." in n or n.startswith("/"):
                problems.append(f"path information in {n}")
            if ".pyc" in n:
                problems.append(f".pyc file {n}")
            if {"__MACOSX", ".git", "__pycache__"} & set(n.split("/")):
                problems.append(f"forbidden folder in {n}")
        if z.testzip() is not None:
            problems.append("bad zip")
        tops = {n.split("/")[0] for n in names}
        if len(tops) != 1:
            problems.append(f"several top folders: {sorted(tops)}")
        package = names[0].split("/")[0]
        if not re.match(r"^[A-Za-z][A-Za-z0-9-_]+$", package):
            problems.append(f"bad top folder name {package!r}")
        if f"{package}/__init__.py" not in names:
            problems.append("no __init__.py")
        if f"{package}/LICENSE" not in names:
            problems.append("no LICENSE")
        parser = configparser.ConfigParser()
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(z.read(f"{package}/metadata.txt").decode("utf8"))
    meta = dict(parser.items("general")) if parser.has_section("general") else {}
    lacking = [f for f in REQUIRED if f not in meta]
    if lacking:
        problems.append("missing metadata: " + ", ".join(lacking))
    if not re.match(r"^[^/]+$", meta.get("author", "")):
        problems.append("author has a slash")
    for key in BOOLEAN:
        if key in meta and meta[key].lower() not in ("true", "false", "1", "0"):
            problems.append(f"{key} is not a boolean")
    for key, placeholder in (("tracker", "http://bugs"), ("repository", "http://repo"),
                             ("homepage", "http://homepage")):
        if key in meta:
            url = urlparse(meta[key])
            if meta[key] == placeholder or not (url.scheme and url.netloc):
                problems.append(f"{key} is not a valid URL")
    min_version = tuple(int(p) for p in meta.get("qgisMinimumVersion", "0").split("."))
    if min_version < (3, 0):
        problems.append("qgisMinimumVersion below 3.0")
    return problems


def _build(tmp_path: Path, **env: str) -> Path:
    out = tmp_path / "wsfusion.zip"
    subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "plugin"], check=True,
                   capture_output=True, timeout=120, env={**os.environ, **env})
    built = REPO / "dist" / "wsfusion.zip"
    out.write_bytes(built.read_bytes())
    return out


def test_make_plugin_meets_every_rule_but_the_publisher_fields(tmp_path):
    """Everything the repository can decide passes; what only a publisher can give (a real
    email and public repository/tracker URLs) is all that is left, and named."""
    problems = validate(_build(tmp_path))
    assert problems == ["missing metadata: " + ", ".join(f for f in REQUIRED
                                                         if f in PUBLISHER_FIELDS)]
    with zipfile.ZipFile(tmp_path / "wsfusion.zip") as z:
        meta = z.read("wsfusion/metadata.txt").decode()
        assert z.read("wsfusion/LICENSE").decode().startswith("MIT License")
    assert "experimental=False" in meta and "example.org" not in meta


def test_publisher_fields_from_the_environment_complete_the_zip(tmp_path):
    if os.environ.get("WSFUSION_EMAIL"):
        pytest.skip("publisher fields already set in this environment")
    zipped = _build(tmp_path, WSFUSION_EMAIL="maintainer@wsfusion.invalid",
                    WSFUSION_REPOSITORY="https://git.wsfusion.invalid/wsfusion",
                    WSFUSION_TRACKER="https://git.wsfusion.invalid/wsfusion/issues")
    assert validate(zipped) == []
    _build(tmp_path)  # leave dist/ as a plain `make plugin` makes it
