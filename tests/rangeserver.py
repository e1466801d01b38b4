"""A local HTTP server with Range support for tests of remote (``/vsicurl/``) inputs.

GDAL reads remote rasters by byte ranges; python's ``SimpleHTTPRequestHandler`` ignores the
``Range`` header, so this handler answers ``206 Partial Content`` itself. It binds 127.0.0.1 on a
free port: nothing leaves the machine and nothing is downloaded from the internet.
"""

from __future__ import annotations

import os
import re
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class RangeHandler(SimpleHTTPRequestHandler):
    """GET/HEAD of files under ``directory``, with single byte ranges (what GDAL asks for)."""

    requests: list[str] = []  # paths asked for, shared by a server's handlers (set per server)

    def log_message(self, *_args) -> None:  # quiet test output
        pass

    def send_head(self):  # noqa: C901 - one place for the status line and headers
        self.requests.append(self.path)
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404, "not found")
            return None
        size = path.stat().st_size
        f = open(path, "rb")
        m = _RANGE.match(self.headers.get("Range", "").strip())
        if m is None:
            self.send_response(200)
            start, end = 0, size - 1
        else:
            a, b = m.groups()
            if a == "":  # suffix range: the last b bytes
                start, end = max(size - int(b or 0), 0), size - 1
            else:
                start, end = int(a), min(int(b) if b else size - 1, size - 1)
            if start >= size:
                f.close()
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        f.seek(start)
        self._left = end - start + 1
        return f

    def copyfile(self, source, outputfile) -> None:
        left = self._left
        while left > 0:
            buf = source.read(min(left, 1 << 16))
            if not buf:
                break
            outputfile.write(buf)
            left -= len(buf)


class RangeServer:
    """``with RangeServer(folder) as srv: srv.url("a.tif")`` serves ``folder`` on 127.0.0.1."""

    def __init__(self, folder: str | os.PathLike) -> None:
        handler = type("Handler", (RangeHandler,), {"requests": []})
        self.requests: list[str] = handler.requests
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                         partial(handler, directory=str(folder)))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> RangeServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)
