"""The cost-tracker's settings, from environment variables (names are the upper-cased field names).

COST_PRICE_FILE=/etc/ho/prices.toml   the price table (default: services/cost_tracker/prices.toml)
COST_PRICES='{"models": {"gpt-4o": {"prompt": 0.0025, "completion": 0.01}}}'   entries over the file's
SLACK_WEBHOOK_URL=https://hooks.slack.com/services/...   alerts to Slack
COST_ALERTS_SNS_TOPIC=arn:aws:sns:us-east-1:123456789012:cost-alerts   alerts to an SNS topic
SES_FROM_EMAIL=alerts@example.com  COST_ALERT_EMAIL=ops@example.com,cfo@example.com   alerts by email (SES)
AWS_REGION=us-east-1  COST_ALERTS_AWS_ENDPOINT_URL=http://localhost:5000   (a local SNS/SES such as moto)
COST_ALERT_CHANNEL_TIMEOUT_S=10   COST_ALERT_MAX_ATTEMPTS=8   COST_ALERT_RETRY_BASE_S=30
COST_SWEEP_INTERVAL_S=30          period rollover, threshold edits, lost publishes are handled this often
COST_THRESHOLD_REFRESH_S=5        how stale another replica's threshold edits may be seen here
COST_BUDGET_REPUBLISH_S=300       every budget state is re-sent to the routers this often
COST_DEFAULT_USER_DAILY_BUDGET_USD=5   every user without a daily budget of their own is blocked past this
COST_MAX_THRESHOLDS_PER_USER=20   thresholds one user's scope may hold (creating another answers 400)
COST_ALERT_SCOPE_HOURLY_LIMIT=10  alerts of one scope sent to Slack/SNS/email per hour; later ones in-app only
WEBHOOK_SECRET=…                  signs users' alert webhooks (X-Signature, as the router's); unset: not sent
WEBHOOK_ALLOW_LOCAL_HTTP=false    a user's alert webhook may be http://localhost (embedded mode)
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from pydantic import Field, SecretStr

from libs.callbacks import WebhookSecret
from libs.config import CommonSettings
from services.cost_tracker.constants import DEFAULT_PRICE_FILE


class CostTrackerSettings(CommonSettings):
    cost_price_file: Path = Field(default=DEFAULT_PRICE_FILE, description="TOML price table")
    cost_prices: str = Field(default="", description="JSON entries over the file's: {providers: …, models: …}")
    slack_webhook_url: SecretStr | None = Field(default=None, description="Slack incoming webhook for alerts")
    cost_alerts_sns_topic: str | None = Field(default=None, description="SNS topic ARN for alerts")
    ses_from_email: str | None = Field(default=None, description="SES sender of alert emails")
    cost_alert_email: str | None = Field(default=None, description="alert email recipients, comma-separated")
    aws_region: str = Field(default="us-east-1", min_length=1)
    cost_alerts_aws_endpoint_url: str | None = Field(
        default=None, description="SNS/SES endpoint override (moto, LocalStack); unset: AWS"
    )
    cost_alert_channel_timeout_s: float = Field(default=10.0, gt=0, description="one send to one channel")
    cost_alert_max_attempts: int = Field(default=8, ge=1, description="deliveries of one alert to a channel")
    cost_alert_retry_base_s: float = Field(default=30.0, gt=0, description="first retry delay; doubles")
    cost_alert_retry_cap_s: float = Field(default=900.0, gt=0, le=900.0, description="the bus delays ≤ 15 min")
    cost_sweep_interval_s: float = Field(default=30.0, gt=0)
    cost_threshold_refresh_s: float = Field(default=5.0, ge=0)
    cost_budget_republish_s: float = Field(default=300.0, gt=0)
    cost_default_user_daily_budget_usd: Decimal | None = Field(
        default=None, gt=0, description="a block budget for every user without a daily one; unset: none"
    )
    cost_max_thresholds_per_user: int = Field(default=20, ge=1, description="thresholds in one user's scope")
    cost_alert_scope_hourly_limit: int = Field(
        default=10, ge=1, description="alerts of one scope delivered to channels per hour (the rest: in-app only)"
    )

    # A user's own alert webhook (alert-destination) is signed with the same key as the workflow webhooks.
    webhook_secret: WebhookSecret = Field(
        default=None, description="HMAC-SHA256 key of X-Signature (at least 32 bytes); unset: user webhooks not sent"
    )
    webhook_allow_local_http: bool = Field(default=False, description="http:// to localhost only (embedded mode)")

    def alert_recipients(self) -> list[str]:
        """COST_ALERT_EMAIL as a list of addresses."""
        return [part.strip() for part in (self.cost_alert_email or "").split(",") if part.strip()]
