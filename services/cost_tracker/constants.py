"""Names and fixed tunables of the cost-tracker, in one place, each with the reason for its value.

Everything an operator may want to change lives in config.CostTrackerSettings instead.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Final

SERVICE_NAME: Final = "cost-tracker"

# PostgreSQL schema owned by the cost-tracker (no service reads another's tables: docs/architecture.md#services)
# and its files.
DB_SCHEMA: Final = "cost_tracker"
MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
DEFAULT_PRICE_FILE: Final = Path(__file__).resolve().parent / "prices.toml"

# Scope of the global totals, thresholds and budgets (the router's budget_states use the same spelling).
GLOBAL_SCOPE: Final = "*"
# The provider column of a running total that sums every provider's spend.
ALL_PROVIDERS: Final = "*"

# Prices are per 1,000 tokens (the original plan's unit).
TOKENS_PER_PRICE_UNIT: Final = Decimal(1000)

# Alert ids are uuid5(ALERT_NAMESPACE, "<threshold id>|<period start>"): every replica that sees the same
# crossing computes the same id, and the cost.alert envelope carries it, so duplicates meet in the database
# and in consumers' de-duplication. Never change it: alerts of the current period would be raised again.
ALERT_NAMESPACE: Final = uuid.UUID("3c8e2f4a-6d1b-5a7c-9e0f-2b4d6f8a1c3e")

# Notification channels a threshold may name (the original plan's names; "in_app" is the alert list itself). They are
# the operators' channels: only an admin's thresholds name them, a user's alert in-app only.
CHANNEL_SLACK: Final = "slack"
CHANNEL_SNS: Final = "sns"
CHANNEL_EMAIL: Final = "email"
CHANNELS: Final = (CHANNEL_SLACK, CHANNEL_SNS, CHANNEL_EMAIL)
# A user's own destinations (alert-destination: their e-mail address, their webhook), delivered to for
# every alert of the user's scope besides the operators' channels the threshold names.
CHANNEL_USER_EMAIL: Final = "user_email"
CHANNEL_USER_WEBHOOK: Final = "user_webhook"

# COST_DEFAULT_USER_DAILY_BUDGET_USD acts as a threshold of every user without a daily budget: its id is
# uuid5(DEFAULT_BUDGET_NAMESPACE, user id), so its alert is raised once per user and day like any other's.
# Never change it: today's default-budget alerts would be raised again.
DEFAULT_BUDGET_NAMESPACE: Final = uuid.UUID("9b2d7e41-3c5a-5f86-a1b0-4e7c2d9f0a63")
DEFAULT_BUDGET_CREATED_BY: Final = "COST_DEFAULT_USER_DAILY_BUDGET_USD"
# COST_ALERT_SCOPE_HOURLY_LIMIT counts a scope's alerts raised within this window.
ALERT_RATE_WINDOW: Final = timedelta(hours=1)

# A delivery being sent is leased to one replica for this long beyond the channel timeout; a replica that
# died mid-send leaves the lease to expire, and a later attempt (the bus's retry) takes the delivery over.
DELIVERY_LEASE_MARGIN_S: Final = 15.0

# An alert or budget change published by the handler that made it is confirmed in the database right after
# the publish; the sweep re-publishes the ones left unconfirmed longer than this (a crash in between).
UNPUBLISHED_GRACE_S: Final = 30.0

# SNS subjects are limited to 100 characters (the API refuses longer ones).
SNS_SUBJECT_MAX: Final = 100

# Forecast: the horizons it answers, and the interval it gives (its default history: contracts/costs.py).
# The interval is the normal approximation of the ordinary-least-squares prediction interval: z = 1.96.
FORECAST_HORIZONS: Final = (7, 30)
FORECAST_LEVEL: Final = Decimal("0.95")
FORECAST_Z: Final = Decimal("1.96")
# Fewer days of history than this and a trend line is noise: the forecast falls back to the daily mean.
FORECAST_MIN_TREND_DAYS: Final = 7
# With three weeks of history (three of each weekday) the forecast fits a day-of-week effect besides the
# trend: fewer, and one odd day would be its weekday's whole effect.
FORECAST_MIN_SEASON_DAYS: Final = 21
# Forecast figures are estimates: 6 decimal places (a millionth of a dollar) is more than they are worth.
FORECAST_QUANTUM: Final = Decimal("0.000001")

# Optimization: the smallest saving worth a line (its default history: contracts/costs.py).
OPTIMIZATION_MIN_SAVING_USD: Final = Decimal("0.000001")
# A recommendation's id is uuid5(RECOMMENDATION_NAMESPACE, "<kind>|<type>|<from>|<to>|<model>"): the same advice
# keeps its id as its figures move, so an id read a minute ago still applies — and an id no longer
# recommended is stale (409). A policy's id is uuid5(POLICY_NAMESPACE, "<request id>"): a redelivered apply
# is the same policy.
RECOMMENDATION_NAMESPACE: Final = uuid.UUID("5e0c1a2b-7d3f-5b49-8e61-0f2a4c6d8b1e")
POLICY_NAMESPACE: Final = uuid.UUID("a7b3c9d1-2e4f-5061-8293-a4b5c6d7e8f9")
# An experiment's id is uuid5(EXPERIMENT_NAMESPACE, "<request id>"): a redelivered create is the same experiment.
EXPERIMENT_NAMESPACE: Final = uuid.UUID("c4d2e6f8-1a3b-5c7d-9e0f-2a4b6c8d0e1f")

# Percentages in answers (shares, savings) are rounded to this.
PERCENT_QUANTUM: Final = Decimal("0.01")
# Averages (a month's total / its workflows) may not terminate (0.01 / 3): rounded to 1e-10 USD, so the
# figure keeps its exact digits as a JSON number (costs themselves are never rounded).
AVERAGE_QUANTUM: Final = Decimal("0.0000000001")
