"""The gateway's instrument: every HTTP request's duration by route, method and status, under the HTTP
semantic conventions' name (http.server.request.duration, seconds; Prometheus:
http_server_request_duration_seconds, whose _count is the request count).

    get_gateway_metrics().record_request(method="POST", route="/api/v2/campaigns/hybrid", status=202, duration_s=0.012)

The route is the matched resource's template, never the raw path (ids would make a series per workflow); a
request that matched no route is recorded without one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from opentelemetry.metrics import Histogram, Meter
from opentelemetry.util.types import AttributeValue

from libs.telemetry.metrics import cached_instruments

METRIC_HTTP_SERVER_DURATION: Final = "http.server.request.duration"
# The semantic conventions' advisory buckets for it, in seconds (up to 10 s: a `?wait=true` request waits longer
# and lands in +Inf, which is what it is).
HTTP_DURATION_BUCKETS_S: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
ATTR_METHOD: Final = "http.request.method"
ATTR_ROUTE: Final = "http.route"
ATTR_STATUS: Final = "http.response.status_code"


@dataclass(frozen=True)
class GatewayMetrics:
    request_duration: Histogram  # s; attrs: http.request.method, http.route, http.response.status_code

    @classmethod
    def from_meter(cls, meter: Meter) -> GatewayMetrics:
        return cls(
            request_duration=meter.create_histogram(
                METRIC_HTTP_SERVER_DURATION,
                unit="s",
                description="Duration of HTTP server requests",
                explicit_bucket_boundaries_advisory=HTTP_DURATION_BUCKETS_S,
            )
        )

    def record_request(self, *, method: str, route: str | None, status: int, duration_s: float) -> None:
        attributes: dict[str, AttributeValue] = {ATTR_METHOD: method, ATTR_STATUS: status}
        if route:
            attributes[ATTR_ROUTE] = route
        self.request_duration.record(duration_s, attributes)


get_gateway_metrics = cached_instruments(GatewayMetrics.from_meter)
"""The process's gateway instruments, created on first use from the global meter."""
