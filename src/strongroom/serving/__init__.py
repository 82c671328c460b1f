"""How the HTTP server runs: a supervisor, its workers, and a login pool they hand logins to.

A login costs milliseconds of CPU; a secret read, tens of microseconds. Served by the same
process, a burst of logins queues every read behind it. So a server has a pool of login
processes (``STRONGROOM_LOGIN_PROCESSES``, which yield the CPU to the workers), and each worker
passes them, over a Unix socket, every new connection whose first request is
``POST /v1/auth/login``: the worker's event loop spends one ``sendmsg`` on such a login
instead of the whole request.

- ``supervisor``: the main process; forks the workers and the login pool, restarts them,
  stops them on SIGTERM. ``startup``: what it checks before it forks anything.
- ``worker``: a worker (uvicorn on the inherited listening socket).
- ``placement``: where work runs (threads, handoff, journal) in each kind of process.
- ``routing``: the pure decision (does this first chunk start a login request?).
- ``handoff``: the login pool, and the worker's side of passing a connection over.
- ``protocol``: a new connection's first protocol: it asks ``handoff`` on the first bytes, and
  gives anything it does not pass over to the server's HTTP protocol.
- ``http_protocol``: the HTTP protocol every connection is served with, in workers and login
  processes: uvicorn's, with Vault's ``LIST`` (``vault_methods``) and request heads bounded in
  size (431) and time (slowloris) (``head_limits``).
- ``login_process``: the login process (the whole app, serving the connections it is given).
- ``descriptors``: each such process sizes its descriptor table at start-up (growing it later,
  in a burst, stalled the event loop).
"""
