"""Passwords out of every message: URLs redacted, secrets scrubbed from error text, errors cut to one line."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, quote_plus

from churnml.config import SECRET_QUERY_KEYS as _SECRET_QUERY_KEYS
from churnml.config import has_password
from churnml.errors import ChurnmlError

_MAX_ERROR_CHARS = 500


def redact_url(url: Any) -> str:
    """The URL as text with its password, and secret-looking query parameters, replaced by ``***``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    text = str(url) if not hasattr(url, "render_as_string") else url.render_as_string(hide_password=False)
    try:
        parsed = make_url(text)
    except (ArgumentError, ValueError, TypeError):
        # Not parseable as a URL: still hide anything between "scheme://user:" and "@", and secret params.
        text = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
        return re.sub(rf"(?i)(\b(?:{'|'.join(_SECRET_QUERY_KEYS)})=)[^&\s]*", r"\1***", text)
    query = {k: ("***" if _secret_key(k) else v) for k, v in parsed.query.items()}
    return parsed.set(query=query).render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>,;]+")


def redact_urls_in(text: str) -> str:
    """``text`` with every URL in it passed through :func:`redact_url` (other text unchanged)."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(
        lambda m: redact_url(m.group(0)) if has_password(m.group(0)) else m.group(0), text
    )


def _secret_key(key: str) -> bool:
    low = key.lower()
    return any(s in low for s in _SECRET_QUERY_KEYS)


def _url_secrets(url: str) -> list[str]:
    """Every secret string of a URL, raw and percent-encoded, longest first (so scrubbing is complete)."""

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    found: set[str] = set()
    try:
        parsed = make_url(url)
        if parsed.password:
            found.add(str(parsed.password))
        for key, value in parsed.query.items():
            if _secret_key(key):
                found.update(value if isinstance(value, tuple) else (value,))
    except (ArgumentError, ValueError, TypeError):
        match = re.search(r"://[^:/@\s]*:([^@\s]*)@", url)
        if match:
            found.add(match.group(1))
    out = set()
    for secret in found:
        # Very short secrets would blank out ordinary words; they cannot be scrubbed meaningfully.
        if len(secret) >= 3:
            out.update({secret, quote(secret, safe=""), quote_plus(secret)})
    return sorted(out, key=len, reverse=True)


def scrub_secrets(text: str, url: str) -> str:
    """``text`` with every secret of ``url`` (password, secret query parameters; raw or encoded) as ``***``."""
    for secret in _url_secrets(url):
        text = text.replace(secret, "***")
    return text


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's message, with its type when it is not one of ours."""
    if isinstance(exc, ChurnmlError):
        text = str(exc)
    else:
        orig = getattr(exc, "orig", None)  # SQLAlchemy wraps the driver's error: show the driver's text
        base = orig if isinstance(orig, BaseException) else exc
        message = str(base).strip()
        text = f"{type(base).__name__}: {message}" if message else type(base).__name__
    first = next((line.strip() for line in text.splitlines() if line.strip()), text)
    return first[:_MAX_ERROR_CHARS]
