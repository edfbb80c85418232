"""What the service layer tells its callers when a command cannot be done."""

from relais_kit.web import FieldProblem

# The request names something that does not hold (unknown site, operator…).
InvalidField = FieldProblem


class NotFound(Exception):
    pass


class NotAllowed(Exception):
    pass


class Conflict(Exception):
    """The referral's status does not allow the move (HTTP 409)."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status
