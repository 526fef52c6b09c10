"""The shipped alerts against the real thing: `recompute project --follow --port P` and `recompute serve`
scraped by Debian's Prometheus server (started here on a free port, its data in a temporary folder),
with the shipped rules loaded; and each /metrics scrape linted by `promtool check metrics`."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pytest
import requests

from tests.support.follow import RECOMPUTE, a_calm_world, an_overdue_invoice, env_of, eventually, following
from tests.support.processes import terminate
from tests.support.prometheus import (
    PROMETHEUS,
    dashboard_expressions,
    families_of_scrape,
    metric_names,
    promtool,
    rule_file_with_faster_for,
    served_family,
    shipped_rules,
)
from tests.support.serve import SECRET, serve_env, served

pytestmark = [pytest.mark.integration, pytest.mark.logical]  # `cdc setup`: on the logical cluster

METRICS_PAGE = (Path(__file__).resolve().parents[2] / "docs" / "reference" / "metrics.md").read_text()
# Prometheus's own series, not recompute's
PROMETHEUS_OWN = {"up"}


@pytest.fixture
def world(stores):
    accounts = a_calm_world(stores, accounts=10)
    setup = subprocess.run([*RECOMPUTE, "cdc", "setup", "--source", "cf_prod"], env=env_of(stores),
                           capture_output=True, text=True, timeout=120)
    assert setup.returncode == 0, setup.stderr
    return stores, accounts


@contextmanager
def project_and_serve(dsns) -> Iterator[tuple[str, str]]:
    """`project --follow --port 0` and `serve --port 0` on the world: their base URLs."""
    with following(dsns, "--port", "0", STRIPE_WEBHOOK_SECRET=SECRET) as process, \
            served(serve_env(dsns)) as serve:
        yield serving_url(process), serve.url


def serving_url(process: subprocess.Popen) -> str:
    line = eventually(lambda: process.stdout.readline(), what="project's serving line")
    return re.search(r"serving on (http://\S+)", line).group(1)


def test_a_real_scrape_of_project_and_serve_passes_promtool_and_carries_every_metric_alerts_and_dashboard_read(
        world):
    dsns, _ = world
    read = {"alerts": [rule["expr"] for rule in shipped_rules()], "dashboard": dashboard_expressions()}
    with project_and_serve(dsns) as urls:
        for url in urls:
            scrape = eventually(partial(_scrape_with_follow_state, url), what=f"a scrape of {url} with the followers")
            linted = promtool("check", "metrics", stdin=scrape)
            assert linted.returncode == 0, linted.stdout + linted.stderr
            served = families_of_scrape(scrape)
            for reader, exprs in read.items():
                names = set().union(*map(metric_names, exprs)) - PROMETHEUS_OWN
                missing = {name for name in names if not served_family(name, served)}
                assert not missing, f"{url}/metrics lacks what the {reader} read: {sorted(missing)}"
            families = {line.split()[2] for line in scrape.splitlines() if line.startswith("# TYPE recompute_")}
            undocumented = {name for name in families
                            if f"`{name}`" not in METRICS_PAGE and f"`{name}_total`" not in METRICS_PAGE}
            assert not undocumented, f"docs/reference/metrics.md does not name {sorted(undocumented)}"


def _scrape_with_follow_state(url: str) -> str | None:
    text = requests.get(f"{url}/metrics", timeout=10).text
    return text if "recompute_follow_partitions_leased" in text and "recompute_cdc_stream_up" in text else None


def test_prometheus_fires_the_breaker_alert_when_the_breaker_opens_and_clears_it_once_resumed(world, tmp_path):
    dsns, accounts = world
    with project_and_serve(dsns) as urls, prometheus(tmp_path, urls) as api:
        eventually(lambda: _targets_up(api) == 2, within=60, what="both recompute targets scraped")
        assert "RecomputeBreakerOpen" not in _alerts(api)
        for account in accounts[:2]:  # 10 accounts, 10% an hour: the second account trips the breaker
            an_overdue_invoice(dsns, account, days=5)
        opened = time.monotonic()
        eventually(lambda: _alerts(api).get("RecomputeBreakerOpen") == "firing", within=90,
                   what="RecomputeBreakerOpen firing in Prometheus")
        print(f"RecomputeBreakerOpen firing {time.monotonic() - opened:.1f} s after the invoices were written: "
              f"{_alerts(api)}")
        resumed = subprocess.run([*RECOMPUTE, "project", "--resume"], env=env_of(dsns), capture_output=True,
                                 text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stderr
        resumed_at = time.monotonic()
        eventually(lambda: "RecomputeBreakerOpen" not in _alerts(api), within=90,
                   what="RecomputeBreakerOpen cleared in Prometheus")
        print(f"RecomputeBreakerOpen cleared {time.monotonic() - resumed_at:.1f} s after `project --resume`: "
              f"{_alerts(api)}")


LOST_FOLLOWER = {"RecomputeChangeStreamBroken", "RecomputePartitionsUnheld", "RecomputeTargetDown"}


def test_prometheus_fires_when_the_only_follower_is_lost_and_clears_once_one_follows_again(world, tmp_path):
    """`serve` goes on being scraped: it says the stream is no longer read and the partitions are
    unheld (from the legacy server and the event store), and Prometheus that the follower is down."""
    dsns, _ = world
    with served(serve_env(dsns)) as serve, following(dsns, "--port", "0") as first:
        follow_url = serving_url(first)
        with prometheus(tmp_path, (follow_url, serve.url)) as api:
            eventually(lambda: _targets_up(api) == 2, within=60, what="both recompute targets scraped")
            eventually(lambda: _stream_read(serve.url), within=60, what="the follower reading the stream")
            assert not LOST_FOLLOWER & set(_alerts(api))
            first.kill()
            first.wait()
            lost = time.monotonic()
            eventually(lambda: all(_alerts(api).get(name) == "firing" for name in LOST_FOLLOWER), within=90,
                       what=f"{sorted(LOST_FOLLOWER)} firing")
            print(f"firing {time.monotonic() - lost:.1f} s after the follower was killed: {_alerts(api)}")
            with following(dsns, "--port", follow_url.rsplit(":", 1)[1]) as second:
                serving_url(second)
                back = time.monotonic()
                eventually(lambda: not LOST_FOLLOWER & set(_alerts(api)), within=90,
                           what=f"{sorted(LOST_FOLLOWER)} cleared")
                print(f"cleared {time.monotonic() - back:.1f} s after a follower started again: {_alerts(api)}")


def _stream_read(url: str) -> bool:
    return 'recompute_cdc_stream_up{source="cf_prod"} 1.0' in requests.get(f"{url}/metrics", timeout=10).text


@contextmanager
def prometheus(tmp: Path, targets: tuple[str, str]) -> Iterator[str]:
    """Prometheus scraping the two recompute processes every second, the shipped rules' expressions
    evaluated every second with `for: 0s`; its API's base URL."""
    rules = rule_file_with_faster_for(tmp)
    follow, serve = (url.removeprefix("http://") for url in targets)
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{rules}']\n"
        "scrape_configs:\n"
        f"  - {{job_name: recompute-follow, static_configs: [{{targets: ['{follow}']}}]}}\n"
        f"  - {{job_name: recompute-serve, static_configs: [{{targets: ['{serve}']}}]}}\n")
    port = _free_port()
    process = subprocess.Popen([str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={tmp / 'data'}",
                                f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=(tmp / "prometheus.log").open("w"))
    api = f"http://127.0.0.1:{port}"
    try:
        eventually(lambda: _ready(api), within=30, what="Prometheus ready")
        yield api
    finally:
        terminate(process)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ready(api: str) -> bool:
    try:
        return requests.get(f"{api}/-/ready", timeout=2).status_code == 200
    except requests.ConnectionError:
        time.sleep(0.2)
        return False


def _targets_up(api: str) -> int:
    targets = requests.get(f"{api}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    return sum(target["health"] == "up" for target in targets)


def _alerts(api: str) -> dict[str, str]:
    """Each alert Prometheus holds now, by name: its state (pending or firing)."""
    alerts = requests.get(f"{api}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return {alert["labels"]["alertname"]: alert["state"] for alert in alerts}
