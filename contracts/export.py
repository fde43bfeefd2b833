"""`python -m contracts.export [--freeze]`: write every contract's JSON Schema under contracts/schemas/, and the
AsyncAPI 3.0 document of the bus that references them (contracts/asyncapi.json).

`--freeze` also copies schemas not yet frozen into contracts/frozen/ (do it once, when a version is
published; a frozen file is never rewritten).
"""

from __future__ import annotations

import argparse

from contracts.asyncapi import ASYNCAPI_FILE, document, render_document
from contracts.schema import FROZEN_DIR, SCHEMA_DIR, all_schemas, render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--freeze", action="store_true", help="freeze newly published schemas")
    args = parser.parse_args()
    SCHEMA_DIR.mkdir(exist_ok=True)
    schemas = all_schemas()
    for stale in SCHEMA_DIR.glob("*.json"):
        if stale.name not in schemas:
            stale.unlink()
    for name, schema in schemas.items():
        (SCHEMA_DIR / name).write_text(render(schema))
        frozen = FROZEN_DIR / name
        if args.freeze and not frozen.exists():
            FROZEN_DIR.mkdir(exist_ok=True)
            frozen.write_text(render(schema))
    ASYNCAPI_FILE.write_text(render_document(document()))
    print(f"wrote {len(schemas)} schemas to {SCHEMA_DIR} and the AsyncAPI document {ASYNCAPI_FILE.name}")


if __name__ == "__main__":
    main()
