"""A page opened in real headless Chromium (Debian's /usr/bin/chromium; `.ci/run` installs it).

One run of the browser gives the DOM after load (--dump-dom), a screenshot, and every console
message the page produced: with --enable-logging=stderr --v=0 Chromium writes each one to stderr as
`...:INFO:CONSOLE:<line>] "<message>", source: <url> (<line>)` (errors, warnings, uncaught
exceptions and resources that failed to load alike).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

CHROMIUM = Path("/usr/bin/chromium")
_CONSOLE = re.compile(r":CONSOLE(?:\(\d+\))?[:\]].*")


@dataclass(frozen=True)
class Opened:
    dom: str
    console: list[str]
    screenshot: Path


def open_page(page: Path | str, scratch: Path, *, width: int = 1400, height: int = 2400) -> Opened:
    """`page` a file, or the address of a page a server serves (a site whose scripts load more files)."""
    url = page if isinstance(page, str) else page.resolve().as_uri()
    screenshot = scratch / f"{Path(urlparse(url).path).stem or 'page'}.png"
    result = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={scratch / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
         "--dump-dom", f"--screenshot={screenshot}", f"--window-size={width},{height}", url],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    console = [m.group(0) for m in _CONSOLE.finditer(result.stderr)]
    return Opened(dom=result.stdout, console=console, screenshot=screenshot)


class Marks(HTMLParser):
    """Every element's attributes, by tag and id / class, from the DOM Chromium built."""

    def __init__(self, dom: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def by_id(self, element_id: str) -> dict[str, str]:
        return next(attrs for _, attrs in self.elements if attrs.get("id") == element_id)

    def marks(self, chart_id: str, kind: str) -> list[dict[str, str]]:
        """The rects of kind `kind` inside the svg `chart_id`."""
        found, inside = [], False
        for tag, attrs in self.elements:
            if tag == "svg":
                inside = attrs.get("id") == chart_id
            elif inside and tag == "rect" and attrs.get("class") == kind:
                found.append(attrs)
        return found
