"""Fixtures of the of-sender tests (the Redis ones are the limiter tests')."""

from tests.rate_limiter.conftest import prefix, redis_client

__all__ = ["prefix", "redis_client"]
