"""AnswerSchema: how every answer schema dumps, as marshmallow does but at a batch's pace."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, missing


class AnswerSchema(Schema):
    """An answer's schema, dumped as marshmallow dumps it, without marshmallow's per-field
    machinery.

    Each field is read from its attribute (or key) and written by the field's own
    serialization, in declaration order; a value an object does not have is left out, as
    marshmallow leaves it out. What that skips (accessor lookups, defaults, hooks) no answer
    schema uses, which __init__ checks: dumping a batch's 1,000 results cost marshmallow about
    15 us a result, most of a batch's time in Python; this costs about 3.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if any(self._hooks.values()):
            raise TypeError(f"{type(self).__name__} has hooks: dump it as a plain Schema")
        self._plan = []
        for name, field in self.dump_fields.items():
            if field.dump_default is not missing or not field._CHECK_ATTRIBUTE:
                raise TypeError(f"{type(self).__name__}.{name} needs marshmallow's own dump")
            self._plan.append((field.data_key or name, field.attribute or name, field._serialize))

    def _serialize(self, obj: Any, *, many: bool = False) -> Any:
        if many and obj is not None:
            return [self._serialize(item) for item in obj]
        answer = {}
        mapping = isinstance(obj, Mapping)
        for key, attribute, serialize in self._plan:
            value = obj.get(attribute, missing) if mapping else getattr(obj, attribute, missing)
            if value is not missing:
                answer[key] = serialize(value, attribute, obj)
        return answer
