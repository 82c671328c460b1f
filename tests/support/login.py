"""Access-key logins as tests make them, over any HTTP client (httpx's, or the in-process
TestClient, which is one)."""

from __future__ import annotations

import httpx


def key_login(access_id: str, access_key: str) -> dict[str, str]:
    """The JSON body of an access-key login."""
    return {"access_id": access_id, "access_type": "access_key", "access_key": access_key}


def key_token(client: httpx.Client, access_id: str, access_key: str) -> str:
    """Log in with an access key through ``client`` (its base URL); the token."""
    answer = client.post("/v1/auth/login", json=key_login(access_id, access_key))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["token"])
