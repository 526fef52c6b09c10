"""Debian's Prometheus for tests (`.ci/run` installs the `prometheus` package): `promtool`, the shipped
rules, and the metric names an expression reads.

    promtool(*args, stdin=None)        runs /usr/bin/promtool, returns the completed process
    shipped_rules() -> [rule dicts]    every rule of ops/prometheus/recompute-rules.yml
    dashboard_expressions() -> [str]   the PromQL of every panel of ops/grafana/recompute.json
    metric_names(expr) -> {names}      the metrics a PromQL expression reads (promql-parser)
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import promql_parser
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL = Path("/usr/bin/promtool")
PROMETHEUS = Path("/usr/bin/prometheus")
RULES = ROOT / "ops" / "prometheus" / "recompute-rules.yml"
RULES_TEST = ROOT / "ops" / "prometheus" / "recompute-rules.test.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "recompute.json"
# What a histogram or counter is served as beside its family's name
_SUFFIXES = ("_bucket", "_count", "_sum")


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(PROMTOOL), *args], input=stdin, capture_output=True, text=True, timeout=60)


def shipped_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """The metric names the selectors of a PromQL expression read (promql-parser's AST)."""
    names: set[str] = set()

    def visit(node) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def served_family(name: str, served: set[str]) -> bool:
    """Whether `name` is served: itself, or a histogram/summary series of a served family."""
    return name in served or any(name.endswith(s) and name[: -len(s)] in served for s in _SUFFIXES)


def families_of_scrape(text: str) -> set[str]:
    """The metric names a /metrics scrape carries (its # TYPE lines, and each sample's name)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(line.split("{")[0].split()[0])
    return names


def dashboard_expressions() -> list[str]:
    """The PromQL of every panel of the Grafana dashboard (rows' panels included)."""
    expressions = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for one in (panel, *panel.get("panels", [])):
            expressions += [target["expr"] for target in one.get("targets", [])]
    return expressions


def rule_file_with_faster_for(tmp: Path, for_: str = "0s") -> Path:
    """A copy of the shipped rules whose expressions are unchanged and whose `for:` is `for_`
    (a real Prometheus in a test cannot wait the shipped minutes)."""
    document = yaml.safe_load(RULES.read_text())
    for group in document["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            rule["for"] = for_
    copy = tmp / "recompute-rules.yml"
    copy.write_text(json.dumps(document))  # JSON is YAML
    return copy
