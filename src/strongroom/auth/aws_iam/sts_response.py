"""Reading STS answers: the GetCallerIdentity result and the error document. Pure.

The XML comes from the configured STS endpoint, yet it is parsed as hostile: CVE-2020-16250
worked because a lenient decoder found a forged ``<GetCallerIdentityResponse>`` inside another
action's echo. So:

* defusedxml with DTDs, entity declarations and external references all forbidden: a billion
  laughs or an external entity is refused at the DOCTYPE, before anything is expanded;
* at most 64 KiB;
* the root must be ``GetCallerIdentityResponse`` in the STS ``2011-06-15`` namespace, holding
  exactly one ``GetCallerIdentityResult`` with exactly one ``Arn``, ``UserId`` and ``Account``,
  each non-empty plain text of bounded length.

An answer that breaks any of this means STS (or whatever answers at ``sts_url``) is broken, not
that the client is: it raises :class:`~strongroom.errors.UpstreamUnavailableError` (502), never
a login denial, so operators see an outage rather than a wave of "bad credentials".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from strongroom.errors import UpstreamUnavailableError

MAX_RESPONSE_BYTES = 64 * 1024
STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
_XML_MEDIA_TYPES = frozenset({"text/xml", "application/xml"})
_MAX_FIELD_CHARS = {"Arn": 2048, "UserId": 256, "Account": 12}
_ACCOUNT = re.compile(r"[0-9]{12}")
_PLAIN_TEXT = re.compile(r"[\x21-\x7e]+")  # ARNs, IDs and account numbers have no spaces
_ERROR_CODE = re.compile(r"[A-Za-z0-9.]{1,64}")


@dataclass(frozen=True)
class CallerIdentity:
    """What STS says the signer of a GetCallerIdentity request is."""

    arn: str
    user_id: str
    account: str


@dataclass(frozen=True)
class StsError:
    """The ``Code`` and ``Message`` of an STS error document (either may be unknown)."""

    code: str | None
    message: str | None


def _name(tag: str) -> str:
    return f"{{{STS_NAMESPACE}}}{tag}"


def _parse_xml(body: bytes) -> Element:
    """Parse with every DTD feature forbidden; raise ValueError on anything else."""
    try:
        return fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        # Billion laughs, quadratic blow-up, XXE: refused before expansion.
        raise ValueError(f"hostile XML refused ({type(exc).__name__})") from exc
    except (ParseError, UnicodeError) as exc:
        raise ValueError("not well-formed XML") from exc


def _media_type(content_type: str | None) -> str | None:
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower()


def _only_child(parent: Element, tag: str) -> Element:
    found = parent.findall(_name(tag))
    if len(found) != 1:
        raise ValueError(f"expected exactly one {tag}, found {len(found)}")
    return found[0]


def _field(result: Element, tag: str) -> str:
    element = _only_child(result, tag)
    if len(element) != 0:
        raise ValueError(f"{tag} has child elements")
    text = element.text or ""
    if not text or len(text) > _MAX_FIELD_CHARS[tag] or not _PLAIN_TEXT.fullmatch(text):
        raise ValueError(f"{tag} is empty, too long or not plain text")
    return text


def parse_get_caller_identity_response(body: bytes, content_type: str | None) -> CallerIdentity:
    """Extract the identity from a 200 answer; raise UpstreamUnavailableError if it is not one.

    ``content_type`` must be ``text/xml`` or ``application/xml`` (parameters ignored): a JSON or
    HTML page is never read as an identity.
    """
    try:
        return _parse_identity(body, content_type)
    except ValueError as exc:
        raise UpstreamUnavailableError(
            reason=f"STS answered 200 with an unusable GetCallerIdentity response: {exc}"
        ) from exc


def _parse_identity(body: bytes, content_type: str | None) -> CallerIdentity:
    if _media_type(content_type) not in _XML_MEDIA_TYPES:
        raise ValueError(f"Content-Type {str(content_type)[:100]!r} is not XML")
    if len(body) > MAX_RESPONSE_BYTES:
        raise ValueError(f"the body is over {MAX_RESPONSE_BYTES} bytes")
    root = _parse_xml(body)
    if root.tag != _name("GetCallerIdentityResponse"):
        raise ValueError("the root element is not GetCallerIdentityResponse in the STS namespace")
    result = _only_child(root, "GetCallerIdentityResult")
    identity = CallerIdentity(
        arn=_field(result, "Arn"),
        user_id=_field(result, "UserId"),
        account=_field(result, "Account"),
    )
    if not _ACCOUNT.fullmatch(identity.account):
        raise ValueError("Account is not 12 digits")
    return identity


def parse_sts_error(body: bytes) -> StsError:
    """Best effort: the first ``Code`` and ``Message`` under ``Error``, in any namespace.

    Real STS answers ``<ErrorResponse xmlns=…><Error><Code>``; moto answers
    ``<ErrorResponse><Errors><Error><Code>`` and labels it text/html, so the content type is
    ignored. Hostile or unparsable bodies give ``StsError(None, None)``; never raises.
    """
    if len(body) > MAX_RESPONSE_BYTES:
        return StsError(None, None)
    try:
        root = _parse_xml(body)
    except ValueError:
        return StsError(None, None)
    code: str | None = None
    message: str | None = None
    for element in root.iter():
        local = element.tag.rsplit("}", 1)[-1] if isinstance(element.tag, str) else ""
        text = (element.text or "").strip()
        if local == "Code" and code is None and _ERROR_CODE.fullmatch(text):
            code = text
        elif local == "Message" and message is None and text:
            message = text
    return StsError(code, message)
