"""The docs site (mkdocs.yml, docs/): built with `mkdocs build --strict` as `.ci/run` builds it, its
command line reference generated from the commands themselves, every alert's runbook link landing on
its own entry, and its pages opened in headless Chromium, served as a docs host would, with no
console errors. And the README: what a newcomer needs first, no more."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import click
import pytest

from recompute.cli import main
from tests.support.browser import open_page
from tests.support.prometheus import shipped_rules

ROOT = Path(__file__).resolve().parents[2]
SETUP_COMMANDS = ["./scripts/bootstrap && .venv/bin/recompute demo", "./scripts/bootstrap && .venv/bin/python -m pytest"]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    built = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(built)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "WARNING" not in result.stderr, result.stderr
    return built


def test_the_cli_reference_is_generated_from_every_command_and_its_options(site):
    page = (site / "reference" / "cli.html").read_text()
    for name, command in main.commands.items():
        if command.hidden:
            continue
        for sub_name, sub in _subcommands(name, command):
            assert f"recompute {sub_name}" in page, sub_name
            for param in sub.params:
                if isinstance(param, click.Option) and not param.hidden:
                    assert max(param.opts, key=len) in page, f"{sub_name} {param.opts}"


def _subcommands(name: str, command: click.Command) -> Iterator[tuple[str, click.Command]]:
    yield name, command
    if isinstance(command, click.Group):
        for sub_name, sub in command.commands.items():
            if not sub.hidden:
                yield from _subcommands(f"{name} {sub_name}", sub)


def test_every_alert_s_runbook_link_lands_on_its_own_entry_of_the_built_runbook(site):
    for rule in shipped_rules():
        url = urlparse(rule["annotations"]["runbook_url"])
        page = site / url.path.lstrip("/")
        assert page.is_file(), rule["annotations"]["runbook_url"]
        assert f'id="{url.fragment}"' in page.read_text(), rule["alert"]


@pytest.mark.browser
@pytest.mark.parametrize("path", ["index.html", "operations/runbook.html", "reference/cli.html",
                                  "reference/configuration.html"])
def test_the_site_s_pages_open_in_chromium_with_no_console_errors(site, tmp_path, path):
    with serving(site) as base:
        opened = open_page(f"{base}/{path}", tmp_path, width=1400, height=1200)
    assert opened.console == [], "the page logged to the console"
    assert "recompute" in opened.dom and opened.screenshot.stat().st_size > 10_000
    if path == "operations/runbook.html":
        assert all(f'id="{rule["alert"].lower()}"' in opened.dom for rule in shipped_rules())


@contextmanager
def serving(directory: Path) -> Iterator[str]:
    """The built site over HTTP on a free loopback port (its search index loads as a docs host serves it)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_readme_is_what_a_newcomer_needs_first_with_the_two_commands_at_the_top():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 120
    first_block = lines[lines.index("```sh") + 1:lines.index("```")]
    assert first_block == SETUP_COMMANDS
    assert lines.index("```sh") < 5
