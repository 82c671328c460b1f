"""An httpx transport that reroutes origins to local servers, keeping the signed Host header.

akeyless-cloud-id and hvac always sign for ``https://sts.amazonaws.com/``. A login test keeps
that as the auth method's ``sts_url`` (so the vetting rules are the production ones) and gives
the STS client this transport, which sends the request to moto instead::

    transport = RoutingTransport({"https://sts.amazonaws.com": moto.url})
    http = create_sts_http_client(5.0, transport=transport)

Only the connection target changes: the request's ``Host`` header (set from the original URL
when the request was built, and covered by the signature) goes out unchanged, so moto verifies
the signature exactly as STS would. Requests to loopback hosts that are not routed pass through
unchanged; anything else raises ``httpx.ConnectError``, so a test can never reach the internet.
"""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import ip_address

import httpx

_LOOPBACK_NAMES = frozenset({"localhost"})


def _origin(url: httpx.URL) -> str:
    default = {"https": 443, "http": 80}.get(url.scheme)
    port = "" if url.port in (None, default) else f":{url.port}"
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{url.scheme}://{host}{port}"


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


class RoutingTransport(httpx.AsyncBaseTransport):
    """Send requests for the given origins to other base URLs; see the module docstring."""

    def __init__(
        self,
        routes: Mapping[str, str],
        *,
        inner: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._routes = {
            _origin(httpx.URL(source)): httpx.URL(target) for source, target in routes.items()
        }
        self._inner = inner or httpx.AsyncHTTPTransport()
        self.routed: list[httpx.URL] = []  # original URLs of the requests that were rerouted

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = self._routes.get(_origin(request.url))
        if target is not None:
            self.routed.append(request.url)
            request.url = request.url.copy_with(
                scheme=target.scheme, host=target.host, port=target.port
            )
        elif not _is_loopback(request.url.host):
            raise httpx.ConnectError(
                f"test transport refuses to reach {_origin(request.url)}", request=request
            )
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()
