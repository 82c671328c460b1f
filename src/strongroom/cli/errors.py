"""The errors a client command can end with. Each carries what to show and what to do next.

    CliError                      exit 1: ``message`` plus an optional ``hint``
    ├── ProfileError              no such profile, a bad profile name, an unreadable file
    ├── AwsCredentialsError       botocore found no AWS credentials or could not load them
    ├── ServerUnreachableError    connection refused, DNS failure, TLS failure, timeout
    └── ServerError               the server answered 4xx/5xx: ``status``, ``code``, ``message``
        └── LoginFailedError      401 from ``POST /v1/auth/login``: the fixed text of SPEC §8

Wrong usage found after option parsing (two exclusive options, a malformed name) is not a
``CliError``: commands raise ``typer.BadParameter`` / ``click.UsageError``, which click reports
with exit code 2.

Nothing secret ever goes into these messages: no token, access key, signature or value. Server
messages are passed through; the server keeps its own messages free of secrets (SPEC §3, §7).
"""

from __future__ import annotations

EXIT_ERROR = 1
EXIT_USAGE = 2

# SPEC section 8: printed verbatim on stderr when a login is refused.
LOGIN_FAILED_TEMPLATE = (
    "can't setup strongroom client: failed to get credentials.\n"
    "error: Desc: Failed to authenticate token based access.\n"
    "Status 401 Unauthorized, Error: {code}.\n"
    "Message: {message}"
)

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def reason_phrase(status: int) -> str:
    """The HTTP reason phrase of ``status`` ("" when unknown)."""
    return _REASONS.get(status, "")


class CliError(Exception):
    """A failure to report to the user: ``message``, and ``hint`` saying what to do next."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    @property
    def code(self) -> str:
        """A stable name for scripts (``--json``): the class name without ``Error``."""
        return type(self).__name__.removesuffix("Error")

    def render(self) -> str:
        """The text for stderr (without a trailing newline)."""
        text = f"error: {self.message}"
        if self.hint:
            text += f"\nhint: {self.hint}"
        return text

    def as_json(self) -> dict[str, object]:
        """The ``--json`` form for stderr: ``{"error", "message"}`` as the server says it."""
        body: dict[str, object] = {"error": self.code, "message": self.message}
        if self.hint:
            body["hint"] = self.hint
        return body


class ProfileError(CliError):
    """The profile is missing or cannot be used."""


class AwsCredentialsError(CliError):
    """No AWS credentials for an ``aws_iam`` login, or botocore could not load them."""


class ServerUnreachableError(CliError):
    """No HTTP answer from the server at all."""


class ServerError(CliError):
    """The server answered with an error status and a ``{"error", "message"}`` body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        hint: str | None = None,
        request_id: str | None = None,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}", hint=hint)
        self.status = status
        self.server_code = code
        self.server_message = message
        self.request_id = request_id
        self.retry_after = retry_after

    @property
    def code(self) -> str:
        return self.server_code

    def as_json(self) -> dict[str, object]:
        body = {"error": self.server_code, "message": self.server_message, "status": self.status}
        if self.hint:
            body["hint"] = self.hint
        if self.request_id:
            body["request_id"] = self.request_id
        return body


class LoginFailedError(ServerError):
    """The server refused the login (401). Rendered exactly as SPEC section 8 prescribes."""

    def render(self) -> str:
        return LOGIN_FAILED_TEMPLATE.format(code=self.server_code, message=self.server_message)
