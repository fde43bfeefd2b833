"""What a user id may be: one rule for every service that receives one.

A user id is the gateway token's `sub`. It travels in envelopes, names rows and Redis keys, and is compared
with the cost-tracker's and router's global scope (the string "*"), so it must never be able to spell that
scope, a glob, whitespace or a control character. Letters, digits and `_ . @ + | : -` cover the subjects of
the common identity providers (an e-mail, a UUID, Auth0's `provider|id`, a URN), starting with a letter or
digit, at most 128 characters.
"""

from __future__ import annotations

import re
from typing import Final, TypeGuard

USER_ID_MAX_LENGTH: Final = 128
USER_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.@+|:-]{0,127}$"
_USER_ID = re.compile(USER_ID_PATTERN)


def is_user_id(value: object) -> TypeGuard[str]:
    """Whether `value` is a user id (never the global scope "*", never empty)."""
    return isinstance(value, str) and _USER_ID.fullmatch(value) is not None
