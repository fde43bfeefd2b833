"""The served OpenAPI document: a valid OpenAPI 3.1 document describing exactly the routes that exist.

(That every answer matches its documented schema is checked on every call of every gateway test, by
conftest.Client.)"""

from __future__ import annotations

import json

from openapi_spec_validator import validate

from services.gateway import openapi_document
from services.gateway.config import GatewaySettings
from services.gateway.console import is_page
from services.gateway.examples import REQUEST_EXAMPLES
from services.gateway.routes import ROUTES
from services.gateway.service import Gateway
from tests.gateway.conftest import OPENAPI, SECRET, Harness


class TestDocument:
    async def test_is_served_without_a_token(self, gw: Harness) -> None:
        """GET /api/openapi.json answers the document, unauthenticated."""
        answer = await gw.client.call("GET", OPENAPI, user=None)
        assert answer.status == 200
        assert answer.body == openapi_document()
        assert answer.body["openapi"] == "3.1.0"

    def test_is_a_valid_openapi_31_document(self) -> None:
        """openapi-spec-validator accepts it."""
        validate(openapi_document())

    async def test_documents_every_route_of_the_app(self, gw: Harness) -> None:
        """Each API route the gateway's aiohttp app serves (all but the console's pages) is in the document, and it
        lists nothing else."""
        app = Gateway(gw.runtime, GatewaySettings(gateway_jwt_secret=SECRET)).app()
        served = {
            (route.method.lower(), route.resource.canonical)
            for route in app.router.routes()
            if route.resource is not None and not is_page(route.resource.canonical)
        }
        document = openapi_document()
        documented = {(method, path) for path, item in document["paths"].items() for method in item}
        assert served == documented
        assert ("post", "/api/v2/campaigns/hybrid") in served

    def test_protected_operations_declare_bearer_auth(self) -> None:
        """Campaign routes require the bearer scheme; health and the document itself do not."""
        paths = openapi_document()["paths"]
        assert paths["/api/v2/campaigns/hybrid"]["post"]["security"] == [{"bearerAuth": []}]
        assert paths["/api/v2/campaigns/status"]["get"]["security"] == [{"bearerAuth": []}]
        assert paths["/api/health/hybrid-orchestrator"]["get"]["security"] == []

    def test_request_body_forbids_unknown_fields(self) -> None:
        """The documented request body is camelCase and closed, as the validation is."""
        schema = openapi_document()["components"]["schemas"]["CampaignRequest"]
        assert schema["additionalProperties"] is False
        assert schema["required"] == ["type"]
        assert {"sendToOnlyFans", "recipientIds", "forceProvider", "requiresMultiPlatform"} <= set(schema["properties"])


class TestExamples:
    def test_every_example_is_a_body_the_gateway_accepts(self) -> None:
        """Each request example validates with its operation's request model, as the handler reads the body."""
        requests = {route.operation_id: route.request for route in ROUTES}
        for operation_id, examples in REQUEST_EXAMPLES.items():
            model = requests[operation_id]
            assert model is not None, operation_id
            for name, example in examples.items():
                model.model_validate_json(json.dumps(example.value))  # raises, naming the field, if refused
                assert example.summary, (operation_id, name)

    def test_the_document_shows_them_with_the_request_body(self) -> None:
        """The campaign, flag, dead-letter and cost writes carry their examples in the served document."""
        shown = {
            operation["operationId"]: operation["requestBody"]["content"]["application/json"].get("examples", {})
            for item in openapi_document()["paths"].values()
            for operation in item.values()
            if "requestBody" in operation
        }
        for operation_id, examples in REQUEST_EXAMPLES.items():
            assert shown[operation_id] == {n: {"summary": e.summary, "value": e.value} for n, e in examples.items()}
        assert {"createHybridCampaign", "updateFeatureFlags", "replayDeadLetters"} <= set(REQUEST_EXAMPLES)
