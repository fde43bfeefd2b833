"""Every setting name, limit and marker of libs.content, in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Final

# --- Rules (rules.py). The shipped defaults sit beside this module; CONTENT_RULES_FILE names a file read
# over them (a rule of the same name replaces the default one).
RULES_FILE_ENV: Final = "CONTENT_RULES_FILE"
DEFAULT_RULES_FILE: Final = Path(__file__).with_name("rules.toml")

# --- Phone numbers (checker.py). A phone rule reports only matches with at least this many digits: a
# local number without its area code ("555-0100") has 7, while shorter digit runs in chat are prices,
# counts and times.
MIN_PHONE_DIGITS: Final = 7

# --- What a violation quotes of the text that broke it (the regeneration prompt and the validation
# verdict show it; logs never do).
MAX_FOUND_CHARS: Final = 80

# --- Sanitising user-supplied prompt fields (sanitize.py). Bounds on what one field may bring into a
# prompt; libs.llm.prompts bounds the rendered block again.
MAX_TEXT_CHARS: Final = 2_000  # one string value
MAX_KEY_CHARS: Final = 64  # one key of the intent's data or of a fan's vars
MAX_ITEMS: Final = 50  # entries of one list or mapping; the rest is dropped
MAX_DEPTH: Final = 4  # nesting of lists and mappings; deeper values become DROPPED
DROPPED: Final = "[dropped]"
# What replaces a prompt-injection phrase or a chat role marker: visible to the model as inert text.
NEUTRALISED: Final = "[removed]"
