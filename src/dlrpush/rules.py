"""Rules the provider's contract puts on user-supplied values, as pure checks.

Each check returns a message a user can act on, or None when the value is fine; the
caller decides whether that becomes an ``InvalidInput``. Today this is the ``uid`` rule:
at most 32 characters, no single quote, no emoji or other symbols.
"""

from __future__ import annotations

import unicodedata

UID_MAX = 32
# Zero-width joiner and emoji variation selector: invisible glue of emoji sequences.
_EMOJI_GLUE = frozenset("\u200d\ufe0f")


def uid_problem(uid: str) -> str | None:
    if len(uid) > UID_MAX:
        return f"uid is {len(uid)} characters; at most {UID_MAX} allowed"
    if "'" in uid:
        return "uid contains a single quote"
    for ch in uid:
        category = unicodedata.category(ch)
        if category == "Cc":
            return f"uid contains a control character (U+{ord(ch):04X})"
        if ord(ch) > 0xFFFF or category in ("So", "Cs") or ch in _EMOJI_GLUE:
            return f"uid contains an emoji or symbol (U+{ord(ch):04X})"
    return None
