"""What ``GET /metrics`` serves (Prometheus text format), and where each metric comes from.

A server is several processes (``serving/``); the request serving ``/metrics`` answers for all
of them. Counters and histograms are kept per process in ``PROMETHEUS_MULTIPROC_DIR`` (set by
``strongroom server`` before anything imports prometheus-client) and added up at each scrape.
What only exists at the moment of the scrape is collected then (``exposition.py``):

============================================  ==============================================
metric                                        counted by
============================================  ==============================================
``strongroom_build_info{version, python}``    ``exposition.py`` (always 1)
``strongroom_process_*{kind, index}``         ``processes.py``: read from ``/proc`` for the
                                              supervisor and each of its children, live
``strongroom_process_exits_total{kind, how}`` the supervisor, when a child exits
``strongroom_http_requests_total{route,       ``api/middleware.py``; ``route`` is the route's
status}``, ``strongroom_http_request_seconds``  template (``api/route_label.py``), never the
                                              raw path
``strongroom_logins_total{method, outcome}``  ``auth/login_outcome.py``
``strongroom_sts_request_seconds``            ``auth/aws_iam/sts_client.py``
``strongroom_login_handoffs_total``           ``serving/handoff.py``
``strongroom_audit_batches_total``,           ``audit/writer.py``
``strongroom_audit_journal_moves_total``
============================================  ==============================================

Why process metrics are not prometheus-client's ``ProcessCollector``: it describes the one
process it runs in, and in multiprocess mode it is not collected at all. Which worker answers
a scrape is chance, so its own figures would jump from one worker to another between scrapes.
"""
