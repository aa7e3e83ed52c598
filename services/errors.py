"""Domain errors. Each carries its HTTP status; the API has one handler that renders them.

User-facing messages are constants, so tests assert on the same text people see.
"""

from __future__ import annotations

from schemas.campaign_spec import FieldError

UNKNOWN_TOKEN = "unknown or revoked token"
OPERATOR_ONLY = "only an operator may do this"
EXPERT_ONLY = "only an expert may review"
PERSON_BLOCKED = "this person is blocked"
NOT_YOUR_ASSIGNMENT = "this assignment belongs to someone else"
ASSIGNMENT_NOT_IN_CAMPAIGN = "this assignment is not part of that campaign"
CAMPAIGN_NOT_RUNNING = "the campaign is not accepting work"
LEASE_EXPIRED_REASSIGNED = (
    "your lease expired and the image was given to someone else; this answer was not counted"
)
ALREADY_ANSWERED = "you already answered this image"
ASSIGNMENT_SKIPPED = "you skipped this image"
ITEM_NOT_IN_REVIEW = "this item is not waiting for review"
ALREADY_REVIEWED = "this item was already reviewed"
RESPONSE_NOT_FOR_ITEM = "that response is not an answer to this item"


class QuorumError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, errors: list[FieldError] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []


class InvalidInput(QuorumError):
    status_code = 422
    code = "invalid"


class Unauthorized(QuorumError):
    status_code = 401
    code = "unauthorized"


class Forbidden(QuorumError):
    status_code = 403
    code = "forbidden"


class NotFound(QuorumError):
    status_code = 404
    code = "not_found"


class Conflict(QuorumError):
    status_code = 409
    code = "conflict"


class Unavailable(QuorumError):
    status_code = 503
    code = "unavailable"
