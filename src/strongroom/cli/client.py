"""The typed HTTP client behind every client command: one server, one profile.

Authentication contract (SPEC section 8):

- A call uses the cached token of the profile when there is one for this server that is good
  for at least ``REFRESH_MARGIN_SECONDS`` more; otherwise it logs in first and caches the token.
- Logins of one profile are serialised across processes by a lock file, and a process that
  waited re-reads the cache before logging in: concurrent commands log in once.
- If the server answers 401 to a *cached* token (revoked, or the server's data was reset),
  the client drops the cache, logs in once more and repeats the call once.
- Every aws_iam login signs a fresh random nonce (``X-Strongroom-Login-Nonce``), so no two
  logins carry the same signature, even within one X-Amz-Date second (the server accepts a
  signature only once).

Errors are :mod:`strongroom.cli.errors`; nothing here prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from strongroom.cli.aws_login import (
    AwsCredentials,
    aws_iam_login_body,
    load_aws_credentials,
    normalize_sts_url,
    sign_get_caller_identity,
    sts_region,
)
from strongroom.cli.errors import (
    LoginFailedError,
    ServerError,
    ServerUnreachableError,
    reason_phrase,
)
from strongroom.cli.profiles import CachedToken, Profile, TokenCache

USER_AGENT = "strongroom-cli/0.1.0"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
Json = dict[str, Any]

_STATUS_HINTS = {
    400: "check the options against the command's --help",
    401: "log in again with strongroom auth (the token was refused)",
    403: (
        "the profile's access roles do not allow this; ask an administrator for a rule "
        "(strongroom set-role-rule) or use another --profile"
    ),
    404: "check the name; list-items, list-roles and list-auth-methods show what you can see",
    409: "it already exists, or it changed meanwhile; look at it and try again",
    413: "secret values are at most 64 KiB",
    429: "too many failed logins from here; wait and try again",
    502: "the server could not reach AWS STS; try again, or ask its operator to check STS access",
    503: "the server cannot serve requests right now; try again shortly",
}
# Where the error code says more than the status.
_CODE_HINTS = {
    "RuleTooComplex": (
        "the rules involved (the rule's path, or the rules you hold) have too many wildcards "
        "to check within the server's budget; use a simpler path, or ask an administrator"
    ),
}


def path_segment(value: str) -> str:
    """One URL path segment, percent-encoded, so that no name can change the route: '/' is
    encoded, and so are the dots of '.' and '..' (URL normalisation would remove them)."""
    encoded = quote(value, safe="")
    return encoded.replace(".", "%2E") if value in (".", "..") else encoded


def item_path(name: str) -> str:
    """An item name as the tail of ``/v1/secrets/…`` (segments encoded one by one)."""
    return "/".join(quote(segment, safe="") for segment in name.strip("/").split("/"))


def _error_from(response: httpx.Response) -> ServerError:
    """A ServerError from an error response, with a hint for what to do next."""
    code = reason_phrase(response.status_code).replace(" ", "") or "Error"
    message = response.reason_phrase or "request failed"
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("error") or code)[:100]
        message = str(body.get("message") or message)[:1000]
    elif response.status_code >= 500 or not response.text:
        message = "the server (or a proxy in front of it) gave no usable answer"
    request_id = response.headers.get("x-request-id")
    retry_after = response.headers.get("retry-after")
    hint = _CODE_HINTS.get(code) or _STATUS_HINTS.get(response.status_code)
    if response.status_code == 429 and retry_after:
        hint = f"too many failed logins from here; wait {retry_after} s and try again"
    elif hint is None and response.status_code >= 500:
        hint = "the server failed; its operator can find the request in the server log"
    if request_id and response.status_code >= 500:
        hint = f"{hint} (request id {request_id})"
    return ServerError(
        response.status_code,
        code,
        message,
        hint=hint,
        request_id=request_id,
        retry_after=retry_after,
    )


class StrongroomClient:
    """Strongroom's REST API (SPEC section 5) as one profile sees it.

    ``http`` (an ``httpx.Client``), ``aws_credentials``, ``clock`` and ``sleep`` are the
    injectable edges; by default a fresh client with timeouts, botocore's credential chain,
    ``time.time`` and ``time.sleep``.
    """

    def __init__(
        self,
        profile: Profile,
        *,
        server_url: str,
        cache: TokenCache,
        http: httpx.Client | None = None,
        aws_credentials: Callable[[], AwsCredentials] = load_aws_credentials,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.profile = profile
        self.server_url = server_url.rstrip("/")
        self._cache = cache
        self._http = http or httpx.Client(
            timeout=DEFAULT_TIMEOUT, headers={"User-Agent": USER_AGENT}, follow_redirects=False
        )
        self._aws_credentials = aws_credentials
        self._clock = clock

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> StrongroomClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        url = self.server_url + path
        try:
            return self._http.request(method, url, json=json, params=params, headers=headers)
        except httpx.TimeoutException:
            raise ServerUnreachableError(
                f"the Strongroom server at {self.server_url} did not answer in time",
                hint="check that the server is up and reachable from here, then try again",
            ) from None
        except httpx.TransportError as exc:
            raise ServerUnreachableError(
                f"cannot reach the Strongroom server at {self.server_url} "
                f"({type(exc).__name__}: {exc})",
                hint=(
                    "check that the server is running and that the URL is right (the "
                    "profile's server_url, STRONGROOM_URL or --server-url)"
                ),
            ) from None

    def _json(self, response: httpx.Response) -> Any:
        if response.status_code == 204 or not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise ServerError(
                response.status_code,
                "InvalidResponse",
                "the server's answer is not JSON",
                hint=f"is {self.server_url} a Strongroom server?",
            ) from None

    # -- login and the token cache ---------------------------------------------------------

    def login(self) -> Json:
        """Log in now (ignoring the cache), cache the token, return the login response.

        Raises LoginFailedError (401), ServerError, ServerUnreachableError, AwsCredentialsError.
        """
        with self._cache.locked():
            return self._login_locked()

    def _login_locked(self) -> Json:
        if self.profile.access_type == "access_key":
            body: Json = {
                "access_id": self.profile.access_id,
                "access_type": "access_key",
                "access_key": self.profile.access_key,
            }
        else:
            credentials = self._aws_credentials()
            sts_url = normalize_sts_url(self.profile.aws_sts_url)
            signed = sign_get_caller_identity(
                credentials,
                sts_url=sts_url,
                region=sts_region(sts_url, self.profile.aws_sts_region),
                server_id=self.profile.server_id,
                user_agent=USER_AGENT,
            )
            body = aws_iam_login_body(self.profile.access_id, signed)
        response = self._send("POST", "/v1/auth/login", json=body)
        if response.status_code == 401:
            error = _error_from(response)
            raise LoginFailedError(401, error.code, error.server_message)
        if response.status_code != 200:
            error = _error_from(response)
            if response.status_code == 400:
                error.hint = (
                    "the server could not read the login: check the profile (strongroom "
                    "configure) and, for aws_iam, its aws_sts_url and this machine's clock"
                )
            raise error
        result: Json = self._json(response)
        token = result.get("token")
        if not isinstance(token, str) or not token:
            raise ServerError(200, "InvalidResponse", "the login answer has no token")
        expires_in = result.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 0.0
        self._cache.store(
            CachedToken(
                token=token,
                expiry=self._clock() + lifetime,
                server_url=self.server_url,
            ),
            expires_at=str(result.get("expires_at", "")),
        )
        return result

    def token_expiry(self) -> float | None:
        """When the cached token expires (unix seconds), or None when none is cached."""
        cached = self._cache.load(self.server_url)
        return cached.expiry if cached is not None else None

    def _token(self) -> tuple[str, bool]:
        """A token to use and whether it came from the cache."""
        cached = self._cache.load(self.server_url)
        if cached is not None and cached.usable(self._clock()):
            return cached.token, True
        with self._cache.locked():
            cached = self._cache.load(self.server_url)
            if cached is not None and cached.usable(self._clock()):
                return cached.token, True  # another process logged in while we waited
            return str(self._login_locked()["token"]), False

    def _relogin_after_rejection(self, rejected: str) -> str:
        with self._cache.locked():
            cached = self._cache.load(self.server_url)
            if cached is not None and cached.token != rejected and cached.usable(self._clock()):
                return cached.token  # another process already replaced it
            self._cache.remove()
            return str(self._login_locked()["token"])

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """An authenticated call; returns the decoded JSON body ({} for 204).

        A 401 to a cached token triggers one fresh login and one retry. Raises ServerError
        for any error status, and the login errors of :meth:`login`.
        """
        token, from_cache = self._token()
        response = self._send(method, path, token=token, json=json, params=params)
        if response.status_code == 401 and from_cache:
            token = self._relogin_after_rejection(token)
            response = self._send(method, path, token=token, json=json, params=params)
        if response.status_code >= 400:
            raise _error_from(response)
        return self._json(response)

    # -- auth ------------------------------------------------------------------------------

    def describe_token(self) -> Json:
        result: Json = self.request("GET", "/v1/auth/token")
        return result

    # -- auth methods ----------------------------------------------------------------------

    def create_auth_method(self, body: Json) -> Json:
        result: Json = self.request("POST", "/v1/auth-methods", json=body)
        return result

    def list_auth_methods(self) -> list[Json]:
        return list(self.request("GET", "/v1/auth-methods").get("auth_methods", []))

    def get_auth_method(self, name: str) -> Json:
        result: Json = self.request("GET", f"/v1/auth-methods/{path_segment(name)}")
        return result

    def update_auth_method(self, name: str, changes: Json) -> Json:
        result: Json = self.request("PATCH", f"/v1/auth-methods/{path_segment(name)}", json=changes)
        return result

    def delete_auth_method(self, name: str) -> None:
        self.request("DELETE", f"/v1/auth-methods/{path_segment(name)}")

    # -- roles -----------------------------------------------------------------------------

    def create_role(self, name: str, description: str) -> Json:
        result: Json = self.request(
            "POST", "/v1/roles", json={"name": name, "description": description}
        )
        return result

    def list_roles(self) -> list[Json]:
        return list(self.request("GET", "/v1/roles").get("roles", []))

    def get_role(self, name: str) -> Json:
        result: Json = self.request("GET", f"/v1/roles/{path_segment(name)}")
        return result

    def delete_role(self, name: str) -> None:
        self.request("DELETE", f"/v1/roles/{path_segment(name)}")

    def set_role_rule(
        self, role: str, *, rule_type: str, path: str, capabilities: list[str], ttl: int | None
    ) -> Json:
        body: Json = {"rule_type": rule_type, "path": path, "capabilities": capabilities}
        if ttl is not None:
            body["ttl"] = ttl
        result: Json = self.request("PUT", f"/v1/roles/{path_segment(role)}/rules", json=body)
        return result

    def delete_role_rule(self, role: str, *, rule_type: str, path: str) -> None:
        self.request(
            "DELETE",
            f"/v1/roles/{path_segment(role)}/rules",
            params={"rule_type": rule_type, "path": path},
        )

    def associate(self, role: str, auth_method: str, sub_claims: dict[str, list[str]]) -> Json:
        result: Json = self.request(
            "POST",
            f"/v1/roles/{path_segment(role)}/associations",
            json={"auth_method": auth_method, "sub_claims": sub_claims},
        )
        return result

    def dissociate(self, role: str, assoc_id: str) -> None:
        self.request(
            "DELETE", f"/v1/roles/{path_segment(role)}/associations/{path_segment(assoc_id)}"
        )

    # -- secrets ---------------------------------------------------------------------------

    def create_secret(self, name: str, value: str, description: str, tags: list[str]) -> Json:
        result: Json = self.request(
            "POST",
            "/v1/secrets",
            json={"name": name, "value": value, "description": description, "tags": tags},
        )
        return result

    def update_secret(self, name: str, value: str, expected_version: int | None) -> Json:
        body: Json = {"value": value}
        if expected_version is not None:
            body["expected_version"] = expected_version
        result: Json = self.request("PUT", f"/v1/secrets/{item_path(name)}", json=body)
        return result

    def get_secret(self, name: str, version: int | None = None) -> Json:
        """``{name, value, version, created_at}`` of the newest (or the given) version."""
        params = {"version": version} if version is not None else None
        result: Json = self.request("GET", f"/v1/secrets/{item_path(name)}", params=params)
        return result

    def get_secret_values(self, names: list[str], version: int | None) -> dict[str, str]:
        body: Json = {"names": names}
        if version is not None:
            body["version"] = version
        result = self.request("POST", "/v1/get-secret-value", json=body)
        return {str(key): str(value) for key, value in result.items()}

    def list_items(self, path: str, recursive: bool) -> Json:
        result: Json = self.request(
            "GET", "/v1/items", params={"path": path, "recursive": str(recursive).lower()}
        )
        return result

    def describe_item(self, name: str) -> Json:
        result: Json = self.request("GET", "/v1/describe-item", params={"name": name})
        return result

    def delete_item(self, name: str, version: int | None) -> None:
        params = {"version": version} if version is not None else None
        self.request("DELETE", f"/v1/secrets/{item_path(name)}", params=params)
