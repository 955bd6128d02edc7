"""`http_get`: allow-listed hosts only, private addresses refused unless allowed, size cap."""

from __future__ import annotations

import pytest

from graphwright.tools import HttpGetConfig, ToolError, build_http_get, check_url


def test_fetches_an_allowed_private_host_when_allowed(base: str) -> None:
    tool = build_http_get(HttpGetConfig(allow_hosts=["127.0.0.1"], allow_private=True))
    out = tool.run({"url": f"{base}/page"})
    assert out.startswith("status: 200") and out.endswith("ok /page")


def test_loopback_is_refused_by_default(base: str) -> None:
    tool = build_http_get(HttpGetConfig(allow_hosts=["127.0.0.1", "localhost"]))
    with pytest.raises(ToolError, match=r"non-public address 127\.0\.0\.1"):
        tool.run({"url": f"{base}/page"})
    with pytest.raises(ToolError, match="non-public"):
        tool.run({"url": "http://localhost/"})


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/latest/meta-data", "http://10.0.0.1/", "http://192.168.1.1/",
     "http://[::1]/", "http://0.0.0.0/", "http://[::ffff:127.0.0.1]/"],
)
def test_private_and_link_local_addresses_are_refused(url: str) -> None:
    cfg = HttpGetConfig(allow_hosts=["*"])
    with pytest.raises(ToolError, match="non-public address"):
        check_url(url, cfg)


def test_hosts_off_the_allow_list_are_refused() -> None:
    cfg = HttpGetConfig(allow_hosts=["*.example.org"])
    with pytest.raises(ToolError, match="not on this tool's allow-list"):
        check_url("https://evil.test/x", cfg)
    with pytest.raises(ToolError, match="only http and https"):
        check_url("file:///etc/passwd", cfg)


def test_redirects_are_checked_at_every_hop(base: str) -> None:
    tool = build_http_get(HttpGetConfig(allow_hosts=["127.0.0.1"], allow_private=True))
    assert tool.run({"url": f"{base}/redirect?to=/landed"}).endswith("ok /landed")
    with pytest.raises(ToolError, match="not on this tool's allow-list"):
        tool.run({"url": f"{base}/redirect?to=http://elsewhere.test/"})


def test_responses_are_capped(base: str) -> None:
    tool = build_http_get(HttpGetConfig(allow_hosts=["127.0.0.1"], allow_private=True,
                                        max_bytes=1000))
    out = tool.run({"url": f"{base}/big"})
    body = out.split("\n\n", 1)[1]
    assert body == "a" * 1000 + "\n[cut at 1000 bytes]"
