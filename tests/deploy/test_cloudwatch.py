"""CloudWatch: the ADOT collector configuration publishes every instrument under the original plan's names and
namespaces, the ECS sidecars and the Kubernetes sqs overlay use that one configuration, and the alarms'
CloudFormation template validates (cfn-lint) and reads metrics the collector publishes."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from cfnlint.api import lint

import libs.llm.constants
import libs.telemetry.constants
import services.cost_tracker.metrics
import services.gateway.metrics
import services.of_sender.metrics
import services.router.metrics
from tests.deploy.kustomize import load_documents
from tests.deploy.support import REPO_ROOT, load_ecs

COLLECTOR = REPO_ROOT / "deploy" / "aws" / "adot" / "collector.yaml"
ALARMS = REPO_ROOT / "deploy" / "aws" / "cloudformation" / "alarms.yaml"
K8S_COLLECTOR = REPO_ROOT / "deploy" / "k8s" / "overlays" / "sqs" / "adot-collector.yaml"
README = REPO_ROOT / "README.md"
NAMESPACES = {"awsemf/orchestrator": "Huntaze/HybridOrchestrator", "awsemf/costs": "Huntaze/AI/Costs"}
ECS_CONFIG_PARAMETER = "arn:aws:ssm:${AWS_REGION}:${AWS_ACCOUNT_ID}:parameter/hybrid-orchestrator/adot-collector-config"
# The modules that name instruments (each owner's METRIC_* constants; METRIC_ATTR_* are attribute keys).
INSTRUMENT_MODULES: tuple[ModuleType, ...] = (
    libs.telemetry.constants,
    libs.llm.constants,
    services.router.metrics,
    services.gateway.metrics,
    services.of_sender.metrics,
    services.cost_tracker.metrics,
)


def collector() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(COLLECTOR.read_text())
    return config


def instrument_names() -> set[str]:
    return {
        value
        for module in INSTRUMENT_MODULES
        for name, value in vars(module).items()
        if name.startswith("METRIC_") and not name.startswith("METRIC_ATTR_") and isinstance(value, str)
    }


def renames(config: dict[str, Any]) -> dict[str, str]:
    """{instrument name: CloudWatch name} of the metricstransform processor."""
    return {t["include"]: t["new_name"] for t in config["processors"]["metricstransform/names"]["transforms"]}


def published(config: dict[str, Any]) -> dict[tuple[str, str], list[list[str]]]:
    """{(namespace, CloudWatch name): its dimension sets} over both awsemf exporters."""
    found: dict[tuple[str, str], list[list[str]]] = {}
    for exporter, namespace in NAMESPACES.items():
        settings = config["exporters"][exporter]
        assert settings["namespace"] == namespace
        for declaration in settings["metric_declarations"]:
            for selector in declaration["metric_name_selectors"]:
                name = re.fullmatch(r"\^([A-Za-z]+)\$", selector)
                assert name, selector
                found[(namespace, name.group(1))] = declaration["dimensions"]
    return found


class TestCollector:
    def test_every_instrument_reaches_cloudwatch_under_the_plans_name(self) -> None:
        """Each instrument the code names is renamed (CamelCase) and declared by the awsemf exporter of its
        pipeline's namespace — the costs pipeline takes exactly the money and token metrics."""
        config = collector()
        names = renames(config)
        assert set(names) == instrument_names()
        assert all(re.fullmatch(r"[A-Z][A-Za-z]+", new) for new in names.values())
        exported = published(config)
        pipelines = config["service"]["pipelines"]
        for pipeline, exporter in (("metrics/orchestrator", "awsemf/orchestrator"), ("metrics/costs", "awsemf/costs")):
            assert pipelines[pipeline]["exporters"] == [exporter]
            (filter_name,) = [p for p in pipelines[pipeline]["processors"] if p.startswith("filter/")]
            kept = config["processors"][filter_name]["metrics"]["include"]["metric_names"]
            declared = {name for (namespace, name) in exported if namespace == NAMESPACES[exporter]}
            assert {names[k] for k in kept} == declared, pipeline
        costs = {n for n, cw in names.items() if (NAMESPACES["awsemf/costs"], cw) in exported}
        assert costs == {
            "cost_recorded_usd",
            "workflow_cost",
            "llm_tokens",
            "gen_ai.client.token.usage",
            "cost_unpriced_calls",
        }

    def test_pipelines_use_only_defined_components(self) -> None:
        """Every receiver, processor, exporter and extension a pipeline names is configured; traces go to X-Ray."""
        config = collector()
        service = config["service"]
        assert set(service["extensions"]) <= set(config["extensions"])
        for pipeline in service["pipelines"].values():
            assert set(pipeline["receivers"]) <= set(config["receivers"])
            assert set(pipeline.get("processors", [])) <= set(config["processors"])
            assert set(pipeline["exporters"]) <= set(config["exporters"])
        assert service["pipelines"]["traces"]["exporters"] == ["awsxray"]

    def test_readme_lists_the_cloudwatch_names(self) -> None:
        """The README's metrics table names exactly the CloudWatch metrics the collector publishes."""
        section = README.read_text().split("### Metrics", 1)[1].split("\n### ", 1)[0]
        listed = set(re.findall(r"^\|[^|]+\|[^|]+\|[^|]+\| `([A-Za-z]+)`", section, flags=re.MULTILINE))
        assert listed == set(renames(collector()).values())

    def test_ecs_sidecars_and_the_sqs_overlay_use_this_configuration(self) -> None:
        """Each ECS service's ADOT sidecar reads the configuration from its SSM parameter (the README says to
        store this file there); the sqs overlay's OpenTelemetryCollector carries this very configuration."""
        for family, definition in load_ecs().items():
            sidecars = [c for c in definition["containerDefinitions"] if c["name"] == "otel-collector"]
            if family == "migrate":
                assert sidecars == []
                continue
            (sidecar,) = sidecars
            assert sidecar["command"] == ["--config=env:AOT_CONFIG_CONTENT"]
            assert sidecar["secrets"] == [{"name": "AOT_CONFIG_CONTENT", "valueFrom": ECS_CONFIG_PARAMETER}]
        (resource,) = [r for r in load_documents(K8S_COLLECTOR) if r["kind"] == "OpenTelemetryCollector"]
        assert resource["spec"]["config"] == collector()


def cfn_lint(template: str) -> list[str]:
    """cfn-lint's findings on `template`, with the rules its command applies by default (errors, warnings)."""
    return [f"{match.rule.id} {match.message}" for match in lint(template)]


class TestAlarms:
    def test_the_template_validates(self) -> None:
        """cfn-lint finds nothing in the alarms' template."""
        assert cfn_lint(ALARMS.read_text()) == []

    def test_cfn_lint_catches_a_misspelt_property(self) -> None:
        """A misspelt alarm property fails cfn-lint (so the pass above means something)."""
        broken = ALARMS.read_text().replace("ComparisonOperator:", "ComparisonOperater:", 1)
        assert any("ComparisonOperater" in finding for finding in cfn_lint(broken))

    def test_alarms_read_what_the_collector_publishes(self) -> None:
        """Daily cost > $50 on CostRecorded (Huntaze/AI/Costs, summed over a day) and workflow error rate > 5 %
        from WorkflowExecutions (Huntaze/HybridOrchestrator): each metric with a dimension set the collector
        declares."""
        exported = published(collector())
        resources = yaml.load(ALARMS.read_text(), Loader=_CfnLoader)["Resources"]
        cost = resources["DailyCostAlarm"]["Properties"]
        assert (cost["Namespace"], cost["MetricName"], cost["Period"], cost["Statistic"]) == (
            "Huntaze/AI/Costs",
            "CostRecorded",
            86400,
            "Sum",
        )
        assert [] in exported[("Huntaze/AI/Costs", "CostRecorded")]
        rate = resources["WorkflowErrorRateAlarm"]["Properties"]
        stats = [m["MetricStat"]["Metric"] for m in rate["Metrics"] if "MetricStat" in m]
        assert len(stats) == 2
        for metric in stats:
            dimensions = sorted(d["Name"] for d in metric.get("Dimensions", []))
            assert dimensions in exported[(metric["Namespace"], metric["MetricName"])], metric
        parameters = yaml.load(ALARMS.read_text(), Loader=_CfnLoader)["Parameters"]
        assert (parameters["DailyCostThresholdUsd"]["Default"], parameters["ErrorRateThresholdPercent"]["Default"]) == (
            50,
            5,
        )


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (!Ref, !GetAtt) read as plain values."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)  # type: ignore[arg-type]


_CfnLoader.add_multi_constructor("!", _tag)


@pytest.mark.parametrize("path", [COLLECTOR, ALARMS, K8S_COLLECTOR])
def test_files_parse(path: Path) -> None:
    """The files are YAML (CloudFormation's tags included)."""
    assert list(yaml.load_all(path.read_text(), Loader=_CfnLoader))
