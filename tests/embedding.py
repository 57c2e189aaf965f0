"""A page on another site that frames ours: a tiny HTTP server on http://localhost:<free port>
serving one HTML page with an <iframe src=...>. The apps under test listen on 127.0.0.1, so the
framing page is a different *site* (localhost vs 127.0.0.1) and the apps' cookies are third-party
there, as on a real sales page (https://sales.example.com framing https://demo.example.com).

    url, stop = serve_embedding_page(live.site_url + "/", page_title="Sales deck")
    try:
        page.goto(url)
        frame = page.frame_locator("#" + FRAME_ID)
    finally:
        stop()

The apps need the page's origin in ``embed_origins`` before they start, and the page needs the
apps' URL: start the page first (``serve_embedding_page()`` with no URL gives ``.origin``), start
the apps with it, then set ``.iframe_url`` (or open ``.url_for(some_url)`` for another target).
"""
from __future__ import annotations

import html
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

FRAME_ID = "embedded"


def embedding_html(iframe_url: str, *, width: int | str = 1000, height: int | str = 800,
                   page_title: str = "A page that embeds the demo", frame_title: str = "GBC demo") -> str:
    """The embedding page: a heading and the iframe (no script, no style attribute)."""
    esc = html.escape
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(page_title)}</title></head>\n<body>\n"
        f"<h1>{esc(page_title)}</h1>\n"
        f"<iframe id=\"{FRAME_ID}\" src=\"{esc(iframe_url)}\" title=\"{esc(frame_title)}\" "
        f"width=\"{esc(str(width))}\" height=\"{esc(str(height))}\" allow=\"clipboard-write\"></iframe>\n"
        "</body></html>\n"
    )


class EmbeddingPage:
    """The running page. ``url, stop = page`` unpacks as the brief's (URL, stop function)."""

    def __init__(self, iframe_url: str, *, width, height, page_title, frame_title, host) -> None:
        self.iframe_url = iframe_url
        self.width, self.height = width, height
        self.page_title, self.frame_title = page_title, frame_title
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server API
                parts = urlsplit(self.path)
                if parts.path == "/favicon.ico":   # no 404 in the browser's console
                    self.send_response(204)
                    self.end_headers()
                    return
                if parts.path != "/":
                    self.send_error(404)
                    return
                src = parse_qs(parts.query).get("src", [owner.iframe_url])[0]
                body = embedding_html(src, width=owner.width, height=owner.height, page_title=owner.page_title,
                                      frame_title=owner.frame_title).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # keep test output quiet
                pass

        # bound to 127.0.0.1 whatever `host` names, so "localhost" never resolves to an unused ::1
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.origin = f"http://{host}:{self._server.server_port}"
        self.url = self.origin + "/"

    def url_for(self, iframe_url: str) -> str:
        """The page framing ``iframe_url`` instead of the default one."""
        return f"{self.url}?src={quote(iframe_url, safe='')}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __iter__(self):
        return iter((self.url, self.stop))

    def __enter__(self) -> EmbeddingPage:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_embedding_page(iframe_url: str = "about:blank", *, width: int | str = 1000, height: int | str = 800,
                         page_title: str = "A page that embeds the demo", frame_title: str = "GBC demo",
                         host: str = "localhost") -> EmbeddingPage:
    """Serve the embedding page on http://<host>:<free port>/ until ``stop()``."""
    return EmbeddingPage(iframe_url, width=width, height=height, page_title=page_title,
                         frame_title=frame_title, host=host)
