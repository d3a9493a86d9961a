"""Every condition reason the operator writes, in one place (docs/troubleshooting.md lists
each; a unit test keeps the two equal). Event reasons are the same words."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # DiscoveryHealthy=True
    DISCOVERY_SUCCEEDED = "DiscoverySucceeded"
    RATE_LIMITED = "RateLimited"  # healthy, but polled less often than asked
    # Ready
    ENDPOINTS_PUBLISHED = "EndpointsPublished"
    NO_READY_ENDPOINTS = "NoReadyEndpoints"
    # The request got no answer
    TIMEOUT = "Timeout"
    CONNECTION_FAILED = "ConnectionFailed"
    TLS_ERROR = "TLSError"
    RESPONSE_TOO_LARGE = "ResponseTooLarge"
    # The answer was not a success
    REDIRECTED = "Redirected"
    UNAUTHORIZED = "Unauthorized"
    NOT_FOUND = "NotFound"
    THROTTLED = "Throttled"
    SERVER_ERROR = "ServerError"
    HTTP_STATUS = "HTTPStatus"
    # The answer was a success but not usable
    INVALID_JSON = "InvalidJSON"
    WRONG_SHAPE = "WrongShape"
    EMPTY_LIST = "EmptyList"
    ALL_WEIGHTS_ZERO = "AllWeightsZero"
    NO_VALID_ENTRIES = "NoValidEntries"
    # Policy and spec
    HOST_NOT_ALLOWED = "HostNotAllowed"
    ADDRESS_NOT_ALLOWED = "AddressNotAllowed"  # the host resolved to a refused address
    INVALID_SPEC = "InvalidSpec"
    SHRINK_HELD = "ShrinkHeld"
    # Credentials
    SECRET_NOT_FOUND = "SecretNotFound"
    SECRET_FORBIDDEN = "SecretForbidden"
    SECRET_UNAVAILABLE = "SecretUnavailable"
    SECRET_KEY_MISSING = "SecretKeyMissing"
    INVALID_SECRET_VALUE = "InvalidSecretValue"
    CREDENTIALS_REJECTED = "CredentialsRejected"
    # Publishing
    PUBLISH_CONFLICT = "PublishConflict"
    CONFLICT = "Conflict"  # a Service or EndpointSlice of that name is not ours: left alone
    PUBLISH_INVALID = "PublishInvalid"
    PUBLISH_FORBIDDEN = "PublishForbidden"
    PUBLISH_NOT_FOUND = "PublishNotFound"
    PUBLISH_UNAVAILABLE = "PublishUnavailable"
    PUBLISH_API_ERROR = "PublishAPIError"
    # HealthPanic (with spec.healthCheck)
    HEALTH_PANIC = "HealthPanic"
    HEALTH_CHECKS_PASSING = "HealthChecksPassing"
    # Stale (with spec.maxStaleness)
    DISCOVERY_STALE = "DiscoveryStale"
    DISCOVERY_FRESH = "DiscoveryFresh"
    # Overloaded (appears once the operator's polls first ran late)
    OVERLOADED = "Overloaded"
    POLLS_ON_TIME = "PollsOnTime"
    # Anything nobody foresaw: the poll loop's error boundary
    INTERNAL_ERROR = "InternalError"


class EventReason(StrEnum):
    """Event reasons that are not condition reasons."""

    ENTRIES_DROPPED = "EntriesDropped"
    SHRINK_APPLIED = "ShrinkApplied"
