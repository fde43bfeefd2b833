"""JSON Schemas for the part of the CRDs that deploy/k8s uses: KEDA's (ScaledObject, TriggerAuthentication) and
the OpenTelemetry Operator's OpenTelemetryCollector.

kubernetes-validate knows only built-in kinds, and KEDA's CRD schemas are not available offline, so these
are written from KEDA's documented fields (keda.sh/docs: ScaledObject spec, TriggerAuthentication, the
rabbitmq and aws-sqs-queue scalers). Strict on purpose: an unknown field is an error, so a misspelt one
fails here instead of being ignored by the cluster.
"""

from __future__ import annotations

from typing import Any

STRING: dict[str, Any] = {"type": "string", "minLength": 1}
METADATA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": STRING,
        "namespace": STRING,
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}
# Scaler parameters: KEDA reads them as strings, numbers included.
TRIGGER_PARAMETERS: dict[str, dict[str, frozenset[str]]] = {
    "rabbitmq": {
        "required": frozenset({"queueName", "mode", "value"}),
        "allowed": frozenset(
            {"host", "hostFromEnv", "protocol", "queueName", "mode", "value", "activationValue", "vhostName"}
        ),
    },
    "aws-sqs-queue": {
        "required": frozenset({"queueURL", "awsRegion"}),
        "allowed": frozenset(
            {
                "queueURL",
                "queueURLFromEnv",
                "queueLength",
                "activationQueueLength",
                "awsRegion",
                "awsEndpoint",
                "identityOwner",
                "scaleOnInFlight",
                "scaleOnDelayed",
            }
        ),
    },
}

SCALED_OBJECT: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": METADATA,
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {"name": STRING, "apiVersion": STRING, "kind": STRING},
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"enum": sorted(TRIGGER_PARAMETERS)},
                            "name": STRING,
                            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                                "additionalProperties": False,
                                "properties": {
                                    "name": STRING,
                                    "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}

TRIGGER_AUTHENTICATION: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "TriggerAuthentication"},
        "metadata": METADATA,
        "spec": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {
                "secretTargetRef": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["parameter", "name", "key"],
                        "additionalProperties": False,
                        "properties": {"parameter": STRING, "name": STRING, "key": STRING},
                    },
                },
                "podIdentity": {
                    "type": "object",
                    "required": ["provider"],
                    "additionalProperties": False,
                    "properties": {
                        "provider": {"enum": ["none", "aws", "azure-workload", "gcp"]},
                        "identityOwner": {"enum": ["keda", "workload"]},
                        "roleArn": STRING,
                    },
                },
            },
        },
    },
}

# The OpenTelemetry Operator's OpenTelemetryCollector (opentelemetry.io/v1beta1), the fields the sqs overlay
# uses (opentelemetry-operator docs, api.md); `config` is the collector's own configuration, checked against
# deploy/aws/adot/collector.yaml by tests/deploy/test_cloudwatch.py.
OPENTELEMETRY_COLLECTOR: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "opentelemetry.io/v1beta1"},
        "kind": {"const": "OpenTelemetryCollector"},
        "metadata": METADATA,
        "spec": {
            "type": "object",
            "required": ["config"],
            "additionalProperties": False,
            "properties": {
                "mode": {"enum": ["deployment", "daemonset", "statefulset", "sidecar"]},
                "replicas": {"type": "integer", "minimum": 1},
                "image": STRING,
                "serviceAccount": STRING,
                "config": {
                    "type": "object",
                    "required": ["receivers", "exporters", "service"],
                    "properties": {"service": {"type": "object", "required": ["pipelines"]}},
                },
            },
        },
    },
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "ScaledObject": SCALED_OBJECT,
    "TriggerAuthentication": TRIGGER_AUTHENTICATION,
    "OpenTelemetryCollector": OPENTELEMETRY_COLLECTOR,
}
