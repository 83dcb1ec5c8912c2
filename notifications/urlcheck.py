"""Server-side request forgery guard for hook URLs.

A hook URL is resolved, and refused when any address it resolves to is not a public
unicast address (loopback, private, link-local, shared, multicast, reserved or
unspecified), unless TEKTON_WEBHOOK_ALLOW_PRIVATE is true. The check runs when the hook is
saved and again before each delivery, and the delivery connects to the address that was
checked (the name is not resolved a second time), so a DNS answer that changes in between
cannot point the request inside the network.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

# Resolution goes through this name so tests can answer without DNS.
getaddrinfo = socket.getaddrinfo


class UrlRefused(Exception):
    """The URL may not be used as a hook target; the message says why in one line."""


@dataclass(frozen=True)
class Target:
    """A checked URL: connect to `address`, send `host_header`, verify TLS for `hostname`."""

    url: str  # the URL with the host replaced by the checked address
    hostname: str
    host_header: str
    address: str
    scheme: str


def _kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "non-public"
    return None


def url_check(url: str) -> Target:
    """Check `url` and resolve its host. Raises UrlRefused."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UrlRefused("the URL must start with https:// or http://")
    if not parts.hostname:
        raise UrlRefused("the URL has no host")
    if parts.username or parts.password:
        raise UrlRefused(
            "the URL must not carry a user or password (they would be stored in plain text); "
            "receivers check the signature instead"
        )
    host = parts.hostname
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        infos = getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UrlRefused(f"the host {host!r} does not resolve ({exc})") from None
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise UrlRefused(f"the host {host!r} does not resolve")
    if not settings.TEKTON_WEBHOOK_ALLOW_PRIVATE:
        for ip in addresses:
            kind = _kind(ip)
            if kind:
                raise UrlRefused(
                    f"the host {host!r} resolves to a {kind} address ({ip}); hooks may only "
                    "call public addresses (TEKTON_WEBHOOK_ALLOW_PRIVATE=true allows others)"
                )
    pinned = addresses[0]
    literal = f"[{pinned}]" if pinned.version == 6 else str(pinned)
    default_port = 443 if parts.scheme == "https" else 80
    netloc = literal if port == default_port else f"{literal}:{port}"
    host_header = host if port == default_port else f"{host}:{port}"
    if ":" in host and not host_header.startswith("["):
        host_header = f"[{host}]" if port == default_port else f"[{host}]:{port}"
    return Target(
        url=urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")),
        hostname=host,
        host_header=host_header,
        address=str(pinned),
        scheme=parts.scheme,
    )
