"""Remote inputs (object storage, HTTP): which are read, and how.

By default only local files are read (input_guard.py): a crafted VRT or STAC item must not make
the tool fetch from hosts the user never named. A user who reads from object storage names the
hosts and buckets they trust (``allow_remote``); a remote input, or a remote source of a local
VRT, is then read only when its host (URLs) or bucket (``s3``/``gs``/``az``) matches one of
those patterns. This module is the one home of that rule and of the GDAL options remote reads
run with (the client and every Dask worker use the same ones).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Sequence, Union
from urllib.parse import urlsplit

from .errors import InputError, WsfusionError
from .errors import shown as restore

# URL schemes a user or a STAC href may give, and the GDAL virtual file system reading each.
URL_PREFIXES = {"http://": "/vsicurl/http://", "https://": "/vsicurl/https://",
                "s3://": "/vsis3/", "gs://": "/vsigs/", "az://": "/vsiaz/"}
# The GDAL handlers read (random access); every other /vsi handler stays refused.
HANDLERS = {"/vsis3/": "s3", "/vsigs/": "gs", "/vsiaz/": "az"}
SCHEMES = ("http", "https", "s3", "gs", "az")
# GDAL options for remote reads, in force around every run that may read one (client and each
# Dask worker task, writers.gdal_cache): retries ride out transient 5xx/429 answers; VSI_CACHE
# keeps recently read ranges so neighbouring windows do not fetch them again.
REMOTE_CONFIG = {"GDAL_HTTP_MAX_RETRY": "5", "GDAL_HTTP_RETRY_DELAY": "1", "VSI_CACHE": "TRUE",
                 "VSI_CACHE_SIZE": str(64 * 2**20)}
# ... and while a remote raster is opened: no directory listing or sidecar probing (.aux.xml,
# .ovr, .msk), each a round trip for files nobody named. Not run-wide: local inputs keep their
# sidecar masks. (CPL_VSIL_CURL_ALLOWED_EXTENSIONS is not set: it would refuse signed URLs
# and extension-less object keys, and EMPTY_DIR already stops the probing.)
REMOTE_OPEN_CONFIG = {**REMOTE_CONFIG, "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
# The core's words for the way out; the CLI rewords it as its flag (RemoteRefused.pattern).
ALLOW_HINT = "allow its {what} with the remote pattern {pattern}"

Patterns = Union[str, Sequence[str], None]


@dataclass(frozen=True)
class Remote:
    """A remote raster: the GDAL name to open, the name as given, and what patterns match."""

    gdal: str  # /vsicurl/https://host/a.tif, /vsis3/bucket/key, ...
    given: str
    scheme: str  # http, https, s3, gs, az
    authority: str  # host[:port] (lower case) for URLs, bucket/container for object stores

    @property
    def what(self) -> str:
        return "host" if self.scheme in ("http", "https") else "bucket"

    @property
    def host(self) -> str:
        return self.authority.rsplit(":", 1)[0] if self.scheme in ("http", "https") \
            else self.authority


class RemoteRefused(InputError):
    """A remote input (or VRT source) whose host or bucket no ``allow_remote`` pattern matches.
    ``pattern`` is the one that would allow it (front ends word the hint with it)."""

    def __init__(self, message: str, *, pattern: str, what: str,
                 path: str | os.PathLike | None = None) -> None:
        self.pattern = pattern
        self.what = what
        super().__init__(message, path=path, hint=ALLOW_HINT.format(what=what, pattern=pattern))


def is_remote_name(name: str) -> bool:
    """A URL or a /vsi path: never a local file, whatever the guard then decides."""
    name = restore(name)
    return name.startswith("/vsi") or name.startswith(tuple(URL_PREFIXES))


def gdal_name(name: str) -> str:
    """A URL (``URL_PREFIXES``' schemes) as the GDAL virtual file system path that reads it;
    any other name as it is."""
    for scheme, prefix in URL_PREFIXES.items():
        if name.startswith(scheme):
            return prefix + name[len(scheme):]
    return name


def parse_remote(name: str) -> Remote | None:
    """The remote raster ``name`` names, None for a local name. InputError (one line) for a
    remote name this tool does not read: other /vsi handlers (/vsizip/, /vsimem/, streaming),
    credentials in the URL, no host or bucket."""
    given = restore(str(name))
    gdal = gdal_name(given)
    if gdal.startswith("/vsicurl/"):
        url = gdal[len("/vsicurl/"):]
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"{given}: /vsicurl/ reads http(s) URLs with a host only; refused")
        if parts.username is not None or parts.password is not None:
            raise InputError(f"{given}: credentials in a URL are refused (they would be "
                             "copied into logs and outputs); use GDAL's configuration instead")
        port = f":{parts.port}" if parts.port is not None else ""
        return Remote(gdal, given, parts.scheme, parts.hostname.lower() + port)
    for prefix, scheme in HANDLERS.items():
        if gdal.startswith(prefix):
            bucket = gdal[len(prefix):].split("/", 1)[0]
            if not bucket or "/" not in gdal[len(prefix):]:
                raise InputError(f"{given}: names no bucket and object; refused")
            # curl drops "." and ".." from the request path: on a path-style endpoint (GCS,
            # MinIO, AWS_VIRTUAL_HOSTING=FALSE) "bucket/../other/key" reads bucket "other".
            if {".", ".."} & set(gdal[len(prefix):].split("/")):
                raise InputError(f"{given}: '.' and '..' path segments are refused (they "
                                 "could leave the bucket)")
            return Remote(gdal, given, scheme, bucket)
    if gdal.startswith("/vsi"):
        handler = gdal.split("/", 2)[1]
        raise InputError(f"{given}: GDAL virtual file system /{handler}/ is not read; only "
                         "local files and /vsicurl/, /vsis3/, /vsigs/, /vsiaz/ (when allowed)")
    return None


def patterns(allow: Patterns) -> tuple[str, ...]:
    """``allow_remote`` as a checked tuple: ``host``, ``*.host``, ``host:port``, ``*``, or
    ``scheme://host-or-bucket`` (scheme: http, https, s3, gs, az) to match that scheme only."""
    if allow is None:
        return ()
    items = (allow,) if isinstance(allow, str) else tuple(allow)
    out = []
    for p in items:
        text = str(p).strip()
        scheme, sep, body = text.rpartition("://")
        body = body.rstrip("/")
        if (sep and scheme.lower() not in SCHEMES) or not body or "/" in body \
                or any(ch.isspace() for ch in body):
            raise WsfusionError(f"remote pattern {text!r} is not a host, bucket or "
                                f"scheme://host-or-bucket (schemes: {', '.join(SCHEMES)})")
        out.append(f"{scheme.lower()}{sep}{body.lower()}")
    return tuple(out)


def matches(remote: Remote, allow: Sequence[str]) -> bool:
    """Whether a checked pattern of ``allow`` matches ``remote``'s host or bucket."""
    for p in allow:
        scheme, sep, body = p.rpartition("://")
        if sep and scheme != remote.scheme:
            continue
        if fnmatchcase(remote.authority, body) or (":" not in body
                                                   and fnmatchcase(remote.host, body)):
            return True
    return False


def check_remote(remote: Remote, allow: Sequence[str], what: str = "remote input",
                 path: str | os.PathLike | None = None) -> None:
    """RemoteRefused unless a pattern of ``allow`` matches; the message names the input and
    the pattern that would allow it."""
    if matches(remote, allow):
        return
    pattern = remote.host if remote.what == "host" else f"{remote.scheme}://{remote.authority}"
    where = "" if path is not None else f"{remote.given}: "
    raise RemoteRefused(f"{where}{what} refused ({remote.what} {remote.authority} is not "
                        "allowed)", pattern=pattern, what=remote.what, path=path)


__all__ = ["REMOTE_CONFIG", "REMOTE_OPEN_CONFIG", "Remote", "RemoteRefused", "URL_PREFIXES",
           "check_remote", "gdal_name", "is_remote_name", "matches", "parse_remote", "patterns"]
