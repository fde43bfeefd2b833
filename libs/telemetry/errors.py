"""What can go wrong while setting up traces, metrics and logs.

    TelemetryError                anything raised by libs.telemetry
    └── TelemetryConfigError      a bad configuration value: an unknown name in OTEL_PROPAGATORS,
                                  OTEL_TRACES_EXPORTER or OTEL_METRICS_EXPORTER, an OTLP protocol we do
                                  not ship, a LOG_FORMAT or LOG_LEVEL we do not know, or a propagator
                                  entry point that fails to load (a libs.config.ConfigError: the
                                  process ends with one line naming it)

Configuration errors are raised at start-up (from `setup_telemetry`, `configure_propagators` or
`configure_logging`) so a misconfigured service fails fast instead of silently losing its traces.
Failures of the OpenTelemetry SDK itself (an unreachable collector, a full export queue) are never raised:
the SDK logs them and drops data, which is what a service should do with telemetry.
"""

from libs.config import ConfigError


class TelemetryError(Exception):
    """Anything raised by libs.telemetry."""


class TelemetryConfigError(TelemetryError, ConfigError):
    """A telemetry or logging configuration value that cannot be honoured."""
