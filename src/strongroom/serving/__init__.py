"""How the HTTP server runs: uvicorn workers that hand login connections to login processes.

A login costs milliseconds of CPU; a secret read, tens of microseconds. Served by the same
process, a burst of logins queues every read behind it. So each worker starts login processes
(``STRONGROOM_LOGIN_PROCESSES``, which yield the CPU to it) and passes them, over a Unix socket,
every new connection whose first request is ``POST /v1/auth/login``: the worker's event loop
spends one ``sendmsg`` on such a login instead of the whole request.

- ``routing``: the pure decision (does this first chunk start a login request?).
- ``handoff``: the worker's side (start the login processes, pass a connection over).
- ``protocol``: a new connection's first protocol: it asks ``handoff`` on the first bytes, and
  gives anything it does not pass over to uvicorn's HTTP protocol.
- ``head_limits``: the HTTP protocol every connection is served with, in workers and login
  processes: request heads bounded in size (431) and time (slowloris).
- ``login_process``: the login process (the whole app, serving the connections it is given).
- ``descriptors``: each such process sizes its descriptor table at start-up (growing it later,
  in a burst, stalled the event loop).
"""
