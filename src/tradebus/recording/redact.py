"""What never lands in a recording, sans-I/O: every record passes ``redact`` before its write.

Four nets, each for what the others cannot see:

- **request headers** are kept only when their name is on a short list that carries protocol
  state (``Accept``, ``Last-Event-ID``, ``x-request-id`` …): ``Authorization``, a session id
  header, and any header an operator adds are replaced whole;
- **names**: a response header, a URL query parameter (the Trader WS token travels as
  ``?token=``) or a key of a JSON request or response body whose name says credential
  (password, token, session id, api key, …) has its value replaced;
- **values**: every secret tradebus knows (each ``Secret`` of the config, every token or
  session id an upstream issued, registered on arrival) is replaced wherever it appears, in
  URLs, bodies and streamed data alike;
- **shapes**: anything shaped like a JWT in a URL, a header or a body is replaced.

The replacement is ``"<redacted>"``. Streamed data (SSE reads, WebSocket messages) gets the
value net only: names there are the upstream's data (a TradingPartners alert has a ``token``
field that is no credential), and a replay must read what the adapter read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec

REDACTED: Final = "<redacted>"
_REDACTED_BYTES: Final = REDACTED.encode()
# Request headers whose values are protocol state, never a credential: every other is replaced.
SAFE_REQUEST_HEADERS: Final = frozenset(
    {
        "accept",
        "accept-encoding",
        "cache-control",
        "connection",
        "content-length",
        "content-type",
        "last-event-id",
        "user-agent",
        "x-request-id",
    }
)
SENSITIVE: Final = re.compile(
    r"pass(word)?|secret|token|api[_-]?key|auth|jwt|cookie|session|user(name)?|credential|"
    r"signature|bearer",
    re.I,
)
# header.payload.signature, each base64url; the header of every JWT starts with {" -> eyJ.
JWT: Final = re.compile(rb"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+")
_JWT_TEXT: Final = re.compile(JWT.pattern.decode())


def secrets_bytes(secrets: Sequence[str]) -> tuple[bytes, ...]:
    """The known secrets as bytes, longest first (a secret inside another is replaced after)."""
    return tuple(sorted({s.encode() for s in secrets if s}, key=len, reverse=True))


def scrub(data: bytes, secrets: Sequence[bytes]) -> bytes:
    """``data`` with every known secret replaced (the value net)."""
    for value in secrets:
        if value in data:
            data = data.replace(value, _REDACTED_BYTES)
    return data


def scrub_text(text: str, secrets: Sequence[bytes]) -> str:
    if not text:
        return text
    out = scrub(text.encode("utf-8", "surrogatepass"), secrets)
    return _JWT_TEXT.sub(REDACTED, out.decode("utf-8", "surrogatepass"))


def request_headers(headers: Mapping[str, str], secrets: Sequence[bytes]) -> dict[str, str]:
    return {
        name: scrub_text(value, secrets) if name.lower() in SAFE_REQUEST_HEADERS else REDACTED
        for name, value in headers.items()
    }


def response_headers(headers: Mapping[str, str], secrets: Sequence[bytes]) -> dict[str, str]:
    return {
        name: REDACTED if SENSITIVE.search(name) else scrub_text(value, secrets)
        for name, value in headers.items()
    }


def url(value: str, secrets: Sequence[bytes], found: set[str] | None = None) -> str:
    """A URL with its userinfo and every credential-named query value replaced (the values
    replaced go to ``found``)."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return scrub_text(value, secrets)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if found is not None:
            found.update(v for k, v in pairs if SENSITIVE.search(k))
        query = urlencode(
            [(k, REDACTED if SENSITIVE.search(k) else v) for k, v in pairs], safe="<>"
        )
    rebuilt = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return scrub_text(rebuilt, secrets)


def _names(value: Any, found: set[str]) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(k, str) and SENSITIVE.search(k):
                if isinstance(v, str):
                    found.add(v)
                out[k] = REDACTED
            else:
                out[k] = _names(v, found)
        return out
    if isinstance(value, list):
        return [_names(v, found) for v in value]
    return value


def body(data: bytes, secrets: Sequence[bytes], found: set[str] | None = None) -> bytes:
    """A REST body: credential-named JSON keys replaced (a login's password, the token or
    session id it answers with), then the value and shape nets. A body that is no JSON object
    or array gets the value and shape nets only. The values replaced go to ``found``: a
    recorder learns there the token or session id an upstream just issued."""
    found = set() if found is None else found
    if data[:1] in (b"{", b"["):
        try:
            decoded = msgspec.json.decode(data)
        except (msgspec.DecodeError, RecursionError):
            pass
        else:
            redacted = _names(decoded, found)
            if redacted != decoded:
                data = msgspec.json.encode(redacted)
    data = scrub(data, secrets)
    found.update(m.decode() for m in JWT.findall(data))
    return JWT.sub(_REDACTED_BYTES, data)
