"""The alerting example (examples/monitoring/prometheus-rules.yaml): its shape as a
PrometheusRule, what it alerts on, and that its promtool unit tests cover every alert.

promtool itself runs in tests/integration/test_alert_rules.py.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from support import REPO

pytestmark = pytest.mark.unit

RULES_FILE = REPO / "examples" / "monitoring" / "prometheus-rules.yaml"

DURATION = (
    r"^(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?$"
)
LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"

# The parts of prometheus-operator's PrometheusRule (monitoring.coreos.com/v1) that the
# example uses, with the constraints Prometheus puts on a rule file. Written for this test
# from the documented API; unknown fields are refused, as Prometheus refuses them.
PROMETHEUS_RULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["groups"],
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": {"type": "string", "pattern": DURATION},
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "required": ["alert", "expr"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "alert": {"type": "string", "pattern": LABEL_NAME},
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": {"type": "string", "pattern": DURATION},
                                        "labels": {
                                            "type": "object",
                                            "propertyNames": {"pattern": LABEL_NAME},
                                            "additionalProperties": {"type": "string"},
                                        },
                                        "annotations": {
                                            "type": "object",
                                            "propertyNames": {"pattern": LABEL_NAME},
                                            "additionalProperties": {"type": "string"},
                                        },
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    },
}


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES_FILE.read_text())
    return [rule for group in doc["spec"]["groups"] for rule in group["rules"]]


def test_prometheus_rules_match_the_schema() -> None:
    doc = yaml.safe_load(RULES_FILE.read_text())
    jsonschema.Draft7Validator.check_schema(PROMETHEUS_RULE_SCHEMA)
    jsonschema.Draft7Validator(PROMETHEUS_RULE_SCHEMA).validate(doc)
    names = [group["name"] for group in doc["spec"]["groups"]]
    assert len(names) == len(set(names)), "group names must be unique"


def test_prometheus_schema_refuses_typos() -> None:
    """The schema is strict enough to matter: a misspelt key or a bad duration fails."""
    validator = jsonschema.Draft7Validator(PROMETHEUS_RULE_SCHEMA)
    doc = yaml.safe_load(RULES_FILE.read_text())
    doc["spec"]["groups"][0]["rules"][0]["fro"] = doc["spec"]["groups"][0]["rules"][0].pop("for")
    assert not validator.is_valid(doc)
    doc = yaml.safe_load(RULES_FILE.read_text())
    doc["spec"]["groups"][0]["rules"][0]["for"] = "5 minutes"
    assert not validator.is_valid(doc)


# Alerts about the operator as a whole, not about one DirectService.
OPERATOR_ALERTS = {
    "DirectServiceShardUnowned",
    "DirectServiceOperatorOverloaded",
    "DirectServiceHealthCheckerRestarting",
}


def test_prometheus_rules_alert_on_staleness_and_no_ready_endpoints() -> None:
    rules = {rule["alert"]: rule for rule in _rules()}
    stale = rules["DirectServiceDiscoveryStale"]["expr"]
    assert "directservice_seconds_since_last_success" in stale
    threshold = re.search(r">\s*(\d+)\s*\*\s*60\s*$", stale)
    assert threshold and int(threshold.group(1)) >= 1, stale  # N minutes, written as N * 60
    empty = rules["DirectServiceNoReadyEndpoints"]["expr"]
    assert re.search(r"directservice_ready_endpoints\)?\s*==\s*0\s*$", empty), empty
    for alert, rule in rules.items():
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert {"summary", "description"} <= set(rule["annotations"])
        if alert not in OPERATOR_ALERTS:
            assert "by (namespace, name)" in rule["expr"], "one alert per DirectService"


def test_prometheus_rules_alert_on_an_unowned_shard() -> None:
    rule = {rule["alert"]: rule for rule in _rules()}["DirectServiceShardUnowned"]
    held, configured = r"sum\(directservice_shards_held\)", r"max\(directservice_shards\)"
    assert re.fullmatch(rf"{held}\s*<\s*{configured}", rule["expr"].strip()), rule["expr"]
    assert rule["for"] == "1m"


def test_prometheus_rules_use_metrics_the_operator_exports() -> None:
    from directservice.obs.metrics import REGISTRY

    exported: set[str] = set()
    for family in REGISTRY.collect():
        exported |= {sample.name for sample in family.samples} | {family.name}
    labels = {
        family.name: {key for sample in family.samples for key in sample.labels}
        for family in REGISTRY.collect()
    }
    for rule in _rules():
        for metric in re.findall(r"\bdirectservice_[a-z_]+\b", rule["expr"]):
            assert metric in exported, f"{rule['alert']} uses {metric}, which is not exported"
            # `by (namespace, name)` needs those labels on the series (when any exist yet).
            if labels.get(metric):
                assert {"namespace", "name"} <= labels[metric], metric


def test_promtool_unit_test_covers_every_alert() -> None:
    """examples/monitoring/prometheus-rules.test.yaml (for `promtool test rules`) tests each
    alert both silent and firing, on series named as the operator exports them."""
    tests = yaml.safe_load((RULES_FILE.parent / "prometheus-rules.test.yaml").read_text())
    assert tests["rule_files"] == ["directservice-rules.yaml"]
    alerts = {rule["alert"] for rule in _rules()}
    cases = [case for test in tests["tests"] for case in test["alert_rule_test"]]
    assert {case["alertname"] for case in cases} == alerts
    for alert in alerts:
        outcomes = [bool(c["exp_alerts"]) for c in cases if c["alertname"] == alert]
        assert True in outcomes and False in outcomes, alert
    series = [s["series"] for test in tests["tests"] for s in test["input_series"]]
    names = {re.match(r"[a-z_]+", s).group(0) for s in series}  # type: ignore[union-attr]
    used = {m for rule in _rules() for m in re.findall(r"\bdirectservice_[a-z_]+\b", rule["expr"])}
    assert names == used
