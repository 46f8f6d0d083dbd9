"""The live view for people (`mmfc live --serve PORT`): a small page on 127.0.0.1 (or the host
given) with the annotated stream and each person's current label and recent history.

    GET /             the page (it polls /state.json twice a second)
    GET /stream.mjpg  the annotated frames as an MJPEG stream (multipart/x-mixed-replace)
    GET /frame.jpg    the latest annotated frame
    GET /state.json   the people and the session's counts (what LiveSession.state gives)

OpenCV's headless build opens no window, so this is the way to watch. A frame is JPEG-coded
once, when the first client asks for it, and only while someone watches; MJPEG_FPS caps what a
client is sent, so a watcher costs the estimator little.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

from mmfc.errors import DataError

BOUNDARY = "mmfc-frame"
MJPEG_FPS = 15.0
JPEG_QUALITY = 80

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>mmfc live: __TITLE__</title>
<style>
body { margin: 0; background: #15171a; color: #e8e8e8; font: 14px system-ui, sans-serif; }
header { padding: 8px 14px; background: #202328; display: flex; justify-content: space-between; }
main { display: flex; gap: 14px; padding: 14px; align-items: flex-start; }
#stream { width: 62vw; max-width: 1280px; min-height: 120px; border: 1px solid #333; background: #000; }
#people { flex: 1; min-width: 260px; }
.person { background: #202328; border-left: 6px solid #888; margin-bottom: 10px; padding: 8px 10px; }
.now { font-size: 18px; margin: 2px 0 6px; }
.bar { height: 6px; background: #333; } .bar div { height: 6px; }
ol { margin: 6px 0 0; padding-left: 18px; color: #b8b8b8; font-size: 12px; }
.muted { color: #999; }
</style></head>
<body><header><b>mmfc live: __TITLE__</b><span id="counts" class="muted"></span></header>
<main><img id="stream" alt="the annotated stream"><div id="people"><p class="muted">waiting for the first window</p></div></main>
<script>
const colour = c => `rgb(${c[0]},${c[1]},${c[2]})`;
const esc = s => String(s).replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
async function poll() {
  try {
    const s = await (await fetch("/state.json", {cache: "no-store"})).json();
    document.getElementById("counts").textContent =
      `${s.seconds.toFixed(1)} s, ${s.fps.toFixed(1)} fps; windows scored ${s.scored}, dropped ${s.dropped}; ` +
      `latency median ${s.latency_ms.median ?? "-"} ms`;
    const people = s.persons.map(p => `<div class="person" style="border-color:${colour(p.colour)}">
      <div class="muted">person ${p.person}${p.in_view ? "" : " (not in view)"}</div>
      <div class="now">${esc(p.label)} <span class="muted">${p.score.toFixed(2)}${p.with ? " with " + p.with : ""}</span></div>
      <div class="bar"><div style="width:${(100 * p.score).toFixed(0)}%;background:${colour(p.colour)}"></div></div>
      <ol>${p.history.map(h => `<li>${h.window[0].toFixed(1)}-${h.window[1].toFixed(1)} s: ${esc(h.label)} ${h.score.toFixed(2)}${h.with ? " (with " + h.with + ")" : ""}</li>`).join("")}</ol>
    </div>`).join("");
    document.getElementById("people").innerHTML = people || '<p class="muted">nobody scored yet</p>';
  } catch (e) {}
}
window.addEventListener("load", () => {
  document.getElementById("stream").src = "/stream.mjpg";
  poll(); setInterval(poll, 500);
});
</script></body></html>
"""


class LiveView:
    """The page and its streams, served on their own threads until stop()."""

    def __init__(self, host: str, port: int, title: str, state: Callable[[], dict]):
        self.title, self.state = title, state
        self._frame: np.ndarray | None = None  # the latest annotated frame, RGB
        self._number = 0  # of that frame
        self._jpeg: tuple[int, bytes] | None = None  # the latest frame coded, by its number
        self._changed = threading.Condition()
        self._closing = False
        try:
            self.httpd = ThreadingHTTPServer((host, port), _handler(self))
        except OSError as exc:
            raise DataError(f"{host}:{port}", f"cannot serve the live view there ({exc.strerror or exc})") from None
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="mmfc-live-view", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def publish(self, frame: np.ndarray) -> None:
        """The newest annotated frame (RGB)."""
        with self._changed:
            self._frame, self._number = frame, self._number + 1
            self._changed.notify_all()

    def stop(self) -> None:
        """End every stream and stop serving."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def jpeg(self, after: int, timeout: float) -> tuple[int, bytes] | None:
        """The first frame numbered above `after` (waiting up to `timeout` seconds), JPEG-coded;
        None when there is none yet or the view is closing."""
        with self._changed:
            self._changed.wait_for(lambda: self._closing or (self._frame is not None and self._number > after), timeout)
            if self._closing or self._frame is None or self._number <= after:
                return None
            if self._jpeg is None or self._jpeg[0] != self._number:
                ok, data = cv2.imencode(".jpg", cv2.cvtColor(self._frame, cv2.COLOR_RGB2BGR),
                                        [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                self._jpeg = (self._number, data.tobytes())
            return self._jpeg

    @property
    def closing(self) -> bool:
        return self._closing


def _handler(view: LiveView) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
            path = self.path.split("?")[0]
            try:
                if path == "/":
                    self._send("text/html; charset=utf-8", PAGE.replace("__TITLE__", _html(view.title)).encode())
                elif path == "/state.json":
                    self._send("application/json", json.dumps(view.state()).encode())
                elif path == "/frame.jpg":
                    latest = view.jpeg(0, 5.0)
                    if latest is None:
                        self.send_error(503, "no frame yet")
                    else:
                        self._send("image/jpeg", latest[1])
                elif path == "/stream.mjpg":
                    self._stream()
                else:
                    self.send_error(404)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the watcher went away

        def _send(self, kind: str, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            number = 0
            while not view.closing:
                latest = view.jpeg(number, 1.0)
                if latest is None:
                    continue
                number, data = latest
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                                 .encode() + data + b"\r\n")
                self.wfile.flush()
                time.sleep(1 / MJPEG_FPS)

        def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's name)
            pass  # the JSON lines on stdout are the command's output

    return Handler


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
