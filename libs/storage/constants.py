"""Every tunable and name of libs.storage in one place, each with the reason for its value."""

from __future__ import annotations

import re
from typing import Final

# asyncpg waits 60 s by default for a connection; a service's readiness probe and the migration job should
# learn much sooner that the database is not there, and the caller decides whether to retry.
CONNECT_TIMEOUT_S: Final = 10.0

# Schema names are interpolated into DDL, search_path and the advisory-lock key, so only plain lowercase
# identifiers (at most PostgreSQL's 63 bytes) are accepted; nothing needs quoting rules beyond that.
SCHEMA_NAME_RE: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# "001_create_workflows.sql": the number orders the files (numerically, so 10 follows 9), the rest describes.
MIGRATION_FILE_RE: Final = re.compile(r"(?P<version>[0-9]+)_(?P<description>[A-Za-z0-9_\-]+)\.sql")
MIGRATION_SUFFIX: Final = ".sql"

# Bookkeeping table created inside each migrated schema.
MIGRATIONS_TABLE: Final = "schema_migrations"

# Namespace mixed into the advisory-lock key so that our lock cannot collide with advisory locks that
# services take for their own purposes on the same database.
MIGRATION_LOCK_NAMESPACE: Final = "libs.storage.migrations:"

# SQLSTATE classes (first two characters) and codes after which the same statement may succeed if retried:
# 08 connection exception, 40 transaction rollback (serialization failure, deadlock), 53 insufficient
# resources (too many connections, disk full), 57 operator intervention (shutdown, cancel, starting up),
# 55P03 lock_not_available (lock_timeout).
RETRYABLE_SQLSTATE_CLASSES: Final = frozenset({"08", "40", "53", "57"})
RETRYABLE_SQLSTATES: Final = frozenset({"55P03"})

# SQLSTATE classes and codes the same data fails with every time (retrying only delays the dead
# letter): 21 cardinality violation (an upsert touching one row twice), 22 data exception (a NUL in text or
# jsonb, a number or date out of range, an untranslatable character), 54 program limit exceeded (too deep,
# too large); 23502 not-null and 23514 check violations. A unique or foreign-key violation may be a race,
# so it is not in here.
PERMANENT_SQLSTATE_CLASSES: Final = frozenset({"21", "22", "54"})
PERMANENT_SQLSTATES: Final = frozenset({"23502", "23514"})

# asyncpg's binary JSONB format is the JSON text behind a one-byte format version; binary saves the
# bytes->str decode that the text format would cost on every value (~10 us per round trip measured).
JSONB_BINARY_VERSION: Final = b"\x01"
