"""`ho token`: an HS256 bearer token signed with GATEWAY_JWT_SECRET — what the gateway verifies in
development and in tests (a production identity provider issues its own RS256/ES256 tokens)."""

from __future__ import annotations

import argparse
import re

from contracts.ids import is_user_id
from libs.config import ConfigError, load_settings
from services.gateway import constants as gc
from services.gateway.auth import make_token
from services.gateway.config import GatewaySettings

# --ttl: a number and a unit; a bare number is seconds.
_DURATION = re.compile(r"(?P<amount>\d+)(?P<unit>[smhd]?)")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "token",
        help="mint a bearer token (HS256, GATEWAY_JWT_SECRET)",
        description="Print a token for user --sub, signed with GATEWAY_JWT_SECRET (with GATEWAY_JWT_ISSUER / "
        "_AUDIENCE when set), so the gateway of that environment accepts it.",
    )
    parser.add_argument("--sub", required=True, type=_user_id, help="the user id (the token's sub)")
    parser.add_argument("--admin", action="store_true", help="role admin: the admin endpoints, every workflow")
    parser.add_argument(
        "--accounts",
        type=_account_list,
        default=None,
        help="comma-separated creator account ids the user may send from (the accounts claim)",
    )
    parser.add_argument(
        "--ttl",
        type=parse_duration,
        default=gc.DEFAULT_TOKEN_TTL_S,
        help="lifetime: 90s, 30m, 24h, 7d or seconds (default 24h; at most GATEWAY_JWT_MAX_LIFETIME_S)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(GatewaySettings)
    secret = settings.gateway_jwt_secret
    if secret is None:
        raise ConfigError("required to sign a token, not set", "GATEWAY_JWT_SECRET")
    if args.ttl > settings.gateway_jwt_max_lifetime_s:
        # The gateway refuses a token whose exp - iat is longer: better said now than as a 401 later.
        raise ConfigError(
            f"{args.ttl} s is longer than GATEWAY_JWT_MAX_LIFETIME_S ({settings.gateway_jwt_max_lifetime_s:g} s)",
            "--ttl",
        )
    token = make_token(
        secret.get_secret_value(),
        args.sub,
        role=gc.ADMIN_ROLE if args.admin else None,
        ttl_s=args.ttl,
        issuer=settings.gateway_jwt_issuer,
        audience=settings.gateway_jwt_audience,
        accounts=args.accounts,
    )
    print(token)
    return 0


def parse_duration(text: str) -> int:
    """ "90s", "30m", "24h", "7d" or "3600" → seconds (more than 0)."""
    match = _DURATION.fullmatch(text.strip().lower())
    seconds = int(match["amount"]) * _UNIT_S[match["unit"]] if match else 0
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected 90s, 30m, 24h, 7d or seconds, got {text!r}")
    return seconds


def _user_id(text: str) -> str:
    if not is_user_id(text):
        raise argparse.ArgumentTypeError("a user id: a letter or digit, then letters, digits, _ . @ + | : -")
    return text


def _account_list(text: str) -> list[str]:
    accounts = [part.strip() for part in text.split(",") if part.strip()]
    bad = [a for a in accounts if not re.fullmatch(gc.PLATFORM_ID_PATTERN, a) or len(a) > gc.MAX_ID_LENGTH]
    if bad:
        raise argparse.ArgumentTypeError(f"not platform account ids (letters, digits, _ - .): {', '.join(bad)}")
    return accounts
