"""PostgreSQL plumbing shared by the services: pools, schema migrations, and their errors.

``libs.storage.migrations`` (the migration command) is deliberately not imported here; ``migrate`` comes
from its implementation module so that ``python -m libs.storage.migrations`` runs without runpy warning
about an already-imported module.
"""

from libs.storage.errors import (
    DatabaseError,
    MigrationError,
    StorageError,
    is_permanent,
    is_retryable,
    to_database_error,
)
from libs.storage.migrator import Migration, discover, migrate
from libs.storage.pg import create_pool, instrument_asyncpg, quote_schema

__all__ = [
    "DatabaseError",
    "Migration",
    "MigrationError",
    "StorageError",
    "create_pool",
    "discover",
    "instrument_asyncpg",
    "is_permanent",
    "is_retryable",
    "migrate",
    "quote_schema",
    "to_database_error",
]
