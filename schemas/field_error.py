"""The one shape of a validation problem, shared by every schema: a field path and a message."""

from __future__ import annotations

from pydantic import BaseModel


class FieldError(BaseModel):
    """One problem with one field of a request, named by its dotted path."""

    field: str
    message: str
