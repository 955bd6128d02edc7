"""`http_get`: fetch a URL from an allow-list of hosts, with a size cap.

Private, loopback, link-local and other non-public addresses are refused
unless the spec allows them (`allow_private: true`), and redirects are
followed by hand so that every hop is checked again.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
from urllib.parse import urljoin, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field

from graphwright.tools._tool import Tool, ToolError


class HttpGetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allow_hosts: list[str] = Field(
        default_factory=list, description="host names or patterns like '*.example.org'"
    )
    allow_private: bool = Field(default=False, description="allow private/loopback/link-local addresses")
    max_bytes: int = Field(default=200_000, ge=1, description="body bytes kept; the rest is cut")
    timeout_s: float = Field(default=10.0, gt=0)
    max_redirects: int = Field(default=3, ge=0)


class HttpGetArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="an http(s) URL on an allowed host")


def _public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _public(ip.ipv4_mapped)
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def check_url(url: str, cfg: HttpGetConfig) -> str:
    """Raise `ToolError` unless `url` may be fetched under `cfg`; return the address to use.

    Every address the host resolves to must pass, and the request then goes to
    the checked address itself, so a second DNS answer cannot swap in another.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ToolError(f"only http and https URLs may be fetched, not {parts.scheme or 'none'!r}")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise ToolError(f"URL {url!r} has no host")
    if not any(fnmatch.fnmatchcase(host, pat.lower()) for pat in cfg.allow_hosts):
        allowed = ", ".join(cfg.allow_hosts) or "none"
        raise ToolError(f"host {host!r} is not on this tool's allow-list (allowed: {allowed})")
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80))
    except socket.gaierror as exc:
        raise ToolError(f"cannot resolve host {host!r}: {exc}") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for ip in addresses:
        if not cfg.allow_private and not _public(ip):
            raise ToolError(
                f"host {host!r} resolves to non-public address {ip}; refused "
                "(set allow_private: true in the spec to allow it)"
            )
    if not addresses:
        raise ToolError(f"host {host!r} has no address")
    return str(addresses[0])


def _pinned(url: str, address: str) -> tuple[str, str, str]:
    """(URL with the host replaced by `address`, Host header, TLS server name)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    ip_text = f"[{address}]" if ":" in address else address
    netloc = ip_text + (f":{parts.port}" if parts.port else "")
    header = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc)), header, host


def http_get(url: str, cfg: HttpGetConfig) -> str:
    import httpx

    current = url
    with httpx.Client(timeout=cfg.timeout_s, follow_redirects=False, trust_env=False) as client:
        for _ in range(cfg.max_redirects + 1):
            address = check_url(current, cfg)
            target, host_header, server_name = _pinned(current, address)
            try:
                with client.stream(
                    "GET",
                    target,
                    headers={"host": host_header},
                    # TLS still checks the certificate against the real host name
                    extensions={"sni_hostname": server_name},
                ) as resp:
                    if resp.is_redirect and "location" in resp.headers:
                        current = urljoin(current, resp.headers["location"])
                        continue
                    body = bytearray()
                    cut = False
                    for block in resp.iter_bytes():
                        body.extend(block)
                        if len(body) > cfg.max_bytes:
                            cut = True
                            del body[cfg.max_bytes :]
                            break
                    ctype = resp.headers.get("content-type", "")
                    charset = resp.charset_encoding or "utf-8"
                    text = bytes(body).decode(charset, "replace")
                    note = f"\n[cut at {cfg.max_bytes} bytes]" if cut else ""
                    return f"status: {resp.status_code}\ncontent-type: {ctype}\n\n{text}{note}"
            except httpx.HTTPError as exc:
                raise ToolError(f"fetching {current!r} failed: {type(exc).__name__}: {exc}") from None
    raise ToolError(f"more than {cfg.max_redirects} redirects from {url!r}")


def build_http_get(config: HttpGetConfig | None = None) -> Tool:
    cfg = config or HttpGetConfig()

    def fetch(url: str) -> str:
        return http_get(url, cfg)

    hosts = ", ".join(cfg.allow_hosts) or "(none configured)"
    return Tool(
        "http_get",
        f"HTTP GET a URL and return status, content type and body. Allowed hosts: {hosts}.",
        HttpGetArgs,
        fetch,
    )
