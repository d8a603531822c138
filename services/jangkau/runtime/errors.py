"""Domain errors. Domain and edge code raise these; the server interceptor maps
each to its gRPC status, so no method repeats the mapping."""

from __future__ import annotations

from dataclasses import dataclass

import grpc


class DomainError(Exception):
    """An error with a gRPC status and a message fit for the caller."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: its path (`campaign.arms[2].platform`) and why."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class InvalidArgument(DomainError):
    """Bad input. The message starts with the field path."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, reason: str, more: list[FieldViolation] | None = None) -> None:
        self.violations = [FieldViolation(field, reason), *(more or [])]
        text = "; ".join(str(v) for v in self.violations[:10])
        if len(self.violations) > 10:
            text += f"; and {len(self.violations) - 10} more"
        super().__init__(text)
        self.field = field
        self.reason = reason

    @classmethod
    def of(cls, violations: list[FieldViolation]) -> InvalidArgument:
        first, *rest = violations
        return cls(first.field, first.reason, rest)


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED


class Unavailable(DomainError):
    code = grpc.StatusCode.UNAVAILABLE


class ResourceExhausted(DomainError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Violations:
    """Collects field violations, then raises them together."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, reason: str) -> None:
        self.items.append(FieldViolation(field, reason))

    def check(self, ok: bool, field: str, reason: str) -> bool:
        if not ok:
            self.add(field, reason)
        return ok

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument.of(self.items)
