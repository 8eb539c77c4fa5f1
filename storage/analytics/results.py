"""The JSON form every analytics result shares: a frozen dataclass's fields as a dict.

The dashboard API answers with ``to_json()`` as it is, so every field of a result holds a JSON
value (None, bool, int, float, str) and the keys are the field names.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["Result"]


class Result:
    """A result record; ``to_json()`` gives its fields as a dict of JSON values."""

    __slots__ = ()

    def to_json(self) -> dict[str, object]:
        """The fields by name; every value is already a JSON value (None, bool, int, float, str)."""
        fields = dataclasses.fields(cast("DataclassInstance", self))
        return {field.name: getattr(self, field.name) for field in fields}
