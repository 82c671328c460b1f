"""AWS IAM login, up to (not including) the database: SPEC section 3.

A login flows through these steps; every step but the STS call is pure::

    decode_cloud_id(cloud_id) | decode_vault_fields(iam_*)   -> UnverifiedStsRequest   (request)
    vet_sts_request(unverified, sts_url=…, server_id=…, now=…) -> VettedStsRequest     (vetting)
    [caller: replay cache keyed by vetted.signature until vetted.usable_until]
    await StsClient(http, timeout=…).get_caller_identity(vetted) -> CallerIdentity     (sts_client)
    claims_from_identity(identity)                            -> AwsIdentityClaims     (identity)
    check_bounds(bounds, claims, source_ip)                   -> None                  (bounds)

Errors (all from :mod:`strongroom.errors`):

    InvalidRequestError       400  the request cannot be read: bad base64/JSON, sizes, an
                                   unparsable URL, Authorization or X-Amz-Date; bad config input
    AuthenticationDenied      401  a readable request fails a security check, STS rejects the
                                   signature, or the identity is outside the bounds
    UpstreamUnavailableError  502  STS is down, slow, redirecting, or answering nonsense

``validate_sts_url`` and the ``validate_*`` helpers serve the auth-method schemas;
``parse_connect_to`` reads ``STRONGROOM_STS_CONNECT_TO`` (ConfigurationError when it is wrong).
"""

from strongroom.auth.aws_iam.bounds import (
    AwsIamBounds,
    check_bounds,
    validate_account_id,
    validate_bound_glob,
    validate_cidr,
)
from strongroom.auth.aws_iam.endpoint import (
    GLOBAL_STS_ENDPOINT,
    connection_origin,
    normalize_endpoint,
    parse_connect_to,
    parse_extra_endpoints,
    validate_sts_url,
)
from strongroom.auth.aws_iam.identity import (
    AwsIdentityClaims,
    PrincipalType,
    claims_from_identity,
)
from strongroom.auth.aws_iam.request import (
    GET_CALLER_IDENTITY_BODY,
    MAX_CLOUD_ID_CHARS,
    UnverifiedStsRequest,
    decode_cloud_id,
    decode_vault_fields,
)
from strongroom.auth.aws_iam.sts_client import StsClient, create_sts_http_client
from strongroom.auth.aws_iam.sts_response import (
    CallerIdentity,
    parse_get_caller_identity_response,
)
from strongroom.auth.aws_iam.vetting import (
    ALLOWED_HEADERS,
    DEFAULT_MAX_SKEW,
    LOGIN_NONCE_HEADER,
    SERVER_ID_HEADER,
    VAULT_SERVER_ID_HEADER,
    VettedStsRequest,
    vet_sts_request,
)

__all__ = [
    "ALLOWED_HEADERS",
    "DEFAULT_MAX_SKEW",
    "GET_CALLER_IDENTITY_BODY",
    "GLOBAL_STS_ENDPOINT",
    "LOGIN_NONCE_HEADER",
    "MAX_CLOUD_ID_CHARS",
    "SERVER_ID_HEADER",
    "VAULT_SERVER_ID_HEADER",
    "AwsIamBounds",
    "AwsIdentityClaims",
    "CallerIdentity",
    "PrincipalType",
    "StsClient",
    "UnverifiedStsRequest",
    "VettedStsRequest",
    "check_bounds",
    "claims_from_identity",
    "connection_origin",
    "create_sts_http_client",
    "decode_cloud_id",
    "decode_vault_fields",
    "normalize_endpoint",
    "parse_connect_to",
    "parse_extra_endpoints",
    "parse_get_caller_identity_response",
    "validate_account_id",
    "validate_bound_glob",
    "validate_cidr",
    "validate_sts_url",
    "vet_sts_request",
]
