"""Keys of the lifespan state that the app shares with the worker's HTTP protocol."""

from __future__ import annotations

# The worker's LoginHandoff (absent when logins are served in the worker).
LOGIN_HANDOFF = "strongroom.login_handoff"
# Whether the HTTP protocol sends each response in one write (serving/coalesced_writes.py).
WRITES_COALESCED = "strongroom.writes_coalesced"
