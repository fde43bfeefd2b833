"""Dashboards and alerts: the Grafana dashboards and the Prometheus rules are well-formed, the PrometheusRule
and the plain rules file say the same, and every metric they query is exposed by a running system."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
import yaml

from libs.simulators import LLMSimulator
from libs.simulators.llm import FaultKind, FaultSpec
from services.gateway.auth import make_token
from tests.deploy.support import REPO_ROOT
from tests.fuzz.embedded_process import EmbeddedProcess

DASHBOARDS = REPO_ROOT / "deploy" / "grafana" / "dashboards"
DATASOURCES = REPO_ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
RULES_FILE = REPO_ROOT / "deploy" / "prometheus" / "rules" / "hybrid-orchestrator.rules.yml"
PROMETHEUS_RULE = REPO_ROOT / "deploy" / "k8s" / "monitoring" / "prometheusrule.yaml"
DASHBOARD_NAMES = ("workflows", "delivery", "costs")
ALERTS = {"DeadLetters", "CircuitOpen", "WorkflowFailureRatio", "DailyCostOver50", "BudgetBlocks", "DeadlineFailures"}
EXPOSED_WITHIN_S = 15.0

# PromQL words that are not metric names: keywords, and the aggregation modifiers whose parentheses hold labels.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}
RULE = {
    "type": "object",
    "required": ["alert", "expr", "labels", "annotations"],
    "properties": {
        "alert": {"type": "string", "pattern": "^[A-Z][A-Za-z0-9]+$"},
        "expr": {"type": "string", "minLength": 1},
        "for": {"type": "string", "pattern": "^[0-9]+[smhd]$"},
        "labels": {"type": "object", "required": ["severity"], "additionalProperties": {"type": "string"}},
        "annotations": {
            "type": "object",
            "required": ["summary", "description"],
            "additionalProperties": {"type": "string"},
        },
    },
    "additionalProperties": False,
}
GROUPS = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "required": ["name", "rules"],
        "properties": {"name": {"type": "string"}, "rules": {"type": "array", "minItems": 1, "items": RULE}},
        "additionalProperties": False,
    },
}
# The part of the Prometheus Operator's PrometheusRule CRD used here, strict like tests/deploy/keda_schema.py.
PROMETHEUS_RULE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            "additionalProperties": False,
        },
        "spec": {
            "type": "object",
            "required": ["groups"],
            "properties": {"groups": GROUPS},
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers left once strings, label matchers, ranges, the
    label lists of by/without/on/ignoring, function calls, keywords and numbers are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        following = text[match.end() :].lstrip()
        if following.startswith("(") or match.group() in KEYWORDS:
            continue
        if match.start() > 0 and (text[match.start() - 1].isdigit() or text[match.start() - 1] == "."):
            continue  # a number's exponent or unit, e.g. 1e-9
        names.add(match.group())
    return names


def dashboard(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DASHBOARDS / f"{name}.json").read_text())
    return loaded


def dashboard_queries() -> dict[str, list[str]]:
    """{dashboard: every target's expression}."""
    return {
        name: [target["expr"] for panel in dashboard(name)["panels"] for target in panel["targets"]]
        for name in DASHBOARD_NAMES
    }


def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return groups


def queried_names() -> dict[str, set[str]]:
    """{dashboard or "rules": the metric names it queries}."""
    found = {name: set().union(*map(metric_names, exprs)) for name, exprs in dashboard_queries().items()}
    found["rules"] = set().union(*(metric_names(rule["expr"]) for group in rule_groups() for rule in group["rules"]))
    return found


class TestQueryParsing:
    def test_metric_names_are_found_and_nothing_else(self) -> None:
        """Names come out of selectors, ranges, aggregations and arithmetic; labels, functions, numbers don't."""
        expr = (
            'sum by (le, http_route) (rate(a_bucket{x="y",z=~"w|v"}[5m])) / clamp_min(sum(rate(b_total[10m])), 1e-9)'
            " > 0.05 and on (job) c offset 5m"
        )
        assert metric_names(expr) == {"a_bucket", "b_total", "c"}


class TestDefinitions:
    def test_dashboards_query_the_provisioned_datasource(self) -> None:
        """Each dashboard (workflows, delivery, costs) has a unique uid, panels with queries, and every query
        on the data source Grafana is provisioned with."""
        uid = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]["uid"]
        uids = {dashboard(name)["uid"] for name in DASHBOARD_NAMES}
        assert len(uids) == len(DASHBOARD_NAMES)
        for name in DASHBOARD_NAMES:
            panels = dashboard(name)["panels"]
            assert len(panels) >= 5, name
            for panel in panels:
                assert panel["targets"], (name, panel["title"])
                assert {t["datasource"]["uid"] for t in panel["targets"]} | {panel["datasource"]["uid"]} == {uid}

    def test_the_rules_file_and_the_prometheusrule_say_the_same(self) -> None:
        """The plain rules file validates, holds the six alerts, and the PrometheusRule (strictly valid) carries
        exactly its groups."""
        groups = rule_groups()
        jsonschema.validate(groups, GROUPS)
        assert {rule["alert"] for group in groups for rule in group["rules"]} == ALERTS
        resource = yaml.safe_load(PROMETHEUS_RULE.read_text())
        jsonschema.validate(resource, PROMETHEUS_RULE_SCHEMA)
        assert resource["spec"]["groups"] == groups

    def test_a_misspelt_rule_field_is_refused(self) -> None:
        """The rule schema is strict: `expression` instead of `expr` fails."""
        rule = dict(rule_groups()[0]["rules"][0])
        rule["expression"] = rule.pop("expr")
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(rule, RULE)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def llm() -> AsyncIterator[LLMSimulator]:
    async with LLMSimulator() as simulator:
        yield simulator


def _exposed(body: str) -> set[str]:
    return {line.split("{", 1)[0].split(" ", 1)[0] for line in body.splitlines() if line and not line.startswith("#")}


class TestExposed:
    async def test_every_metric_queried_is_exposed_by_a_running_system(self, tmp_path: Path, llm: LLMSimulator) -> None:
        """The embedded system, after one delivered workflow and one a provider refused, exposes on /metrics
        every metric name each dashboard and alert rule queries: no panel stays empty for want of a metric."""
        metrics_port = _free_port()
        system = EmbeddedProcess(
            tmp_path / "embedded.log",
            env={
                "METRICS_PORT": str(metrics_port),
                "AZURE_OPENAI_ENDPOINT": llm.azure_endpoint,
                "AZURE_OPENAI_API_KEY": "simulator",
                "OPENAI_BASE_URL": llm.openai_base_url,
                "OPENAI_API_KEY": "simulator",
            },
        )
        await asyncio.to_thread(system.start)
        try:
            headers = {"Authorization": f"Bearer {make_token(system.secret, sub='creator-obs')}"}
            url = f"{system.url}/api/v2/campaigns/hybrid?wait=true"
            delivered = {
                "type": "message_generation",
                "data": {"fanName": "Alex", "topic": "weekend plans"},
                "sendToOnlyFans": True,
                "recipientIds": ["fan-obs-1"],
            }
            async with aiohttp.ClientSession(headers=headers) as session:
                async with session.post(url, json=delivered) as response:
                    assert response.status == 200, await response.text()
                    assert (await response.json())["data"]["status"] == "completed"
                llm.add_fault_spec(FaultSpec(kind=FaultKind.BAD_REQUEST, count=None))
                refused = {"type": "message_generation", "data": {"fanName": "Sam", "topic": "a refused one"}}
                async with session.post(url, json=refused) as response:
                    assert (await response.json())["data"]["status"] == "failed"
                wanted = queried_names()
                missing: dict[str, set[str]] = {}
                deadline = asyncio.get_running_loop().time() + EXPOSED_WITHIN_S
                while True:
                    async with session.get(f"http://127.0.0.1:{metrics_port}/metrics") as response:
                        exposed = _exposed(await response.text())
                    missing = {k: v - exposed for k, v in wanted.items() if v - exposed}
                    if not missing or asyncio.get_running_loop().time() > deadline:
                        break
                    await asyncio.sleep(0.5)
        finally:
            await asyncio.to_thread(system.stop)
        assert missing == {}, f"not exposed: {missing}\n{system.logs()}"
        assert set(wanted) == {*DASHBOARD_NAMES, "rules"}
