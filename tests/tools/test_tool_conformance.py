"""Every built-in tool passes the tool conformance suite."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

import pytest

from graphwright.plugins import Registry
from graphwright.testing.tool_suite import ToolConformance, ToolUnderTest


class TestCalculator(ToolConformance):
    @pytest.fixture
    def tool_case(self, registry: Registry) -> ToolUnderTest:
        return ToolUnderTest(registry, "calculator", {}, {"expression": "17*23"},
                             {"expression": 17}, expected_in_output="391")


class TestPython(ToolConformance):
    @pytest.fixture
    def tool_case(self, registry: Registry) -> ToolUnderTest:
        return ToolUnderTest(registry, "python", {"timeout_s": 5}, {"code": "print(6*7)"},
                             {"source": "print(1)"}, expected_in_output="42")


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from loopback"
        self.send_response(200)
        self.send_header("content-type", "text/plain; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def hello_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


class TestHttpGet(ToolConformance):
    @pytest.fixture
    def tool_case(self, registry: Registry, hello_url: str) -> ToolUnderTest:
        return ToolUnderTest(registry, "http_get",
                             {"allow_hosts": ["127.0.0.1"], "allow_private": True},
                             {"url": hello_url}, {"url": ["not", "a", "string"]},
                             expected_in_output="hello from loopback")
