"""Credentials in a `--storage` URL: read as the user meant them, never shown.

Users paste passwords as they are, `postgresql://me:p@ss/word@db.lan/sweeps`, where a URL would need `p%40ss%2Fword`.
Split at the first `@`, as URL parsers (SQLAlchemy's among them) do, such a URL names the host `ss/word@db.lan`,
the connection fails, and the driver's message prints the password's tail. Here the user information ends at
the last `@` before the host (a host name has none), user and password are percent-escaped for the drivers, and
every message shows the URL with the password as `***`; driver messages are scrubbed of it as well.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

SECRET_PARAMETERS = re.compile(r"(?i)\b(password|passwd|pwd|secret|token)=([^&]*)")


@dataclass(frozen=True)
class StorageUrl:
    for_driver: str  # user and password percent-escaped: what SQLAlchemy or Redis is given
    shown: str  # the password as ***: for messages, study.json and the summary
    secrets: tuple[str, ...]  # the password (as given, unescaped, escaped) and secret query values


def read_storage_url(url: str) -> StorageUrl:
    if "://" not in url:
        return StorageUrl(url, mask_parameters(url), _parameter_secrets(url))
    scheme, rest = url.split("://", 1)
    # The user information ends at the last @ outside a secret parameter's value: a password may hold @, / or ?.
    values = [match.span(2) for match in SECRET_PARAMETERS.finditer(rest)]
    ats = [i for i, c in enumerate(rest) if c == "@" and not any(a <= i < b for a, b in values)]
    user_info, after = (rest[: ats[-1]], rest[ats[-1] + 1 :]) if ats else (None, rest)
    secrets = _parameter_secrets(after)
    escaped_after = SECRET_PARAMETERS.sub(lambda m: f"{m[1]}={quote(unquote(m[2]), safe='')}", after)
    if user_info is None:
        return StorageUrl(f"{scheme}://{escaped_after}", f"{scheme}://{mask_parameters(after)}", secrets)
    user, colon, password = user_info.partition(":")
    escaped_user = quote(unquote(user), safe="")
    if not colon:
        return StorageUrl(
            f"{scheme}://{escaped_user}@{escaped_after}", f"{scheme}://{user}@{mask_parameters(after)}", secrets
        )
    escaped_password = quote(unquote(password), safe="")
    return StorageUrl(
        f"{scheme}://{escaped_user}:{escaped_password}@{escaped_after}",
        f"{scheme}://{user}:***@{mask_parameters(after)}",
        (password, unquote(password), escaped_password, *secrets),
    )


def mask_parameters(query: str) -> str:
    return SECRET_PARAMETERS.sub(r"\1=***", query)


def _parameter_secrets(query: str) -> tuple[str, ...]:
    return tuple(form for _, value in SECRET_PARAMETERS.findall(query) for form in (value, unquote(value)))


def scrub(text: str, url: StorageUrl) -> str:
    """`text` (a driver's message) with every form of the URL's secrets replaced by ***, longest first (those of
    one or two characters would mangle every word of the message; no driver prints an escaped password)."""
    for secret in sorted({s for s in url.secrets if len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
