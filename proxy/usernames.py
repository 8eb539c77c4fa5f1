"""How dashboard usernames are compared: one folding for storage, sessions and throttling.

Two spellings name the same user when they are equal after Unicode canonical composition and full
case folding: "René" typed as é or as e + U+0301, "Straße" and "STRASSE", "Σίσυφος" and
"ΣΊΣΥΦΟΣ". ``str.lower()`` is not enough (it keeps "ß" and the final sigma), and folding without
normalising first leaves NFC and NFD spellings apart. Every place that asks "is this the same
user?" (the user table's look-ups and uniqueness, sessions, the sign-in throttle, "you cannot
delete yourself") uses :func:`fold_username`, so none can disagree with another.
"""

from __future__ import annotations

import unicodedata


def fold_username(username: str) -> str:
    """The form usernames are compared in: NFC, case-folded, NFC again (folding can decompose)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", username).casefold())
