"""Shared test rig: real AWS-shaped things to test logins against, without the internet.

    moto_sts.MotoServer      a moto_server subprocess on loopback with SigV4 checks switched on,
                             IAM roles/users in account 123456789012 (and others), credentials
    signing                  botocore-signed GetCallerIdentity requests as cloud_id or Vault fields
    stub_sts.StubSts         a scripted local STS for what moto cannot do: delays, 5xx, resets,
                             hostile XML, redirects; it records every request it receives
    transport.RoutingTransport  an httpx transport that sends https://sts.amazonaws.com (or any
                             origin) to a local server, keeping the Host header that was signed

Nothing here depends on pytest; fixtures live next to the tests that use them
(``tests/aws_iam/conftest.py`` has the session-scoped moto). Import as
``tests.support.<module>``.
"""
