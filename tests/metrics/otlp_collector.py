"""A real OTLP/HTTP metrics collector for tests: an HTTP server on 127.0.0.1 that decodes what arrives.

Airflow's OpenTelemetry path exports with ``OTLPMetricExporter`` (protobuf over HTTP POST to
``/v1/metrics``); this server answers 200 and keeps every data point it was sent.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest


@dataclass(frozen=True)
class OtlpPoint:
    """One data point: ``kind`` is the OTLP data field (``sum``, ``gauge``, ``histogram``, ...)."""

    name: str
    kind: str
    attributes: tuple[tuple[str, str], ...]
    value: float
    """A sum's or gauge's value; a histogram's sum."""
    count: int = 0
    """A histogram's count."""


def _points(request: ExportMetricsServiceRequest) -> list[OtlpPoint]:
    points = []
    for resource in request.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                kind = metric.WhichOneof("data")
                for point in getattr(metric, kind).data_points:
                    attributes = tuple(sorted((a.key, a.value.string_value) for a in point.attributes))
                    if kind in ("histogram", "exponential_histogram"):
                        points.append(OtlpPoint(metric.name, kind, attributes, point.sum, point.count))
                    else:
                        value = point.as_double if point.WhichOneof("value") == "as_double" else point.as_int
                        points.append(OtlpPoint(metric.name, kind, attributes, float(value)))
    return points


class OtlpCollector:
    """Bound on a free port of 127.0.0.1; ``points`` grows as exports arrive (thread-safe)."""

    def __init__(self) -> None:
        self.points: list[OtlpPoint] = []
        self.paths: set[str] = set()
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                collector._receive(self.path, body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port: int = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="otlp-collector", daemon=True)
        self._thread.start()

    def _receive(self, path: str, body: bytes) -> None:
        request = ExportMetricsServiceRequest()
        request.ParseFromString(body)
        with self._lock:
            self.paths.add(path)
            self.points.extend(_points(request))

    def snapshot(self) -> list[OtlpPoint]:
        with self._lock:
            return list(self.points)

    def wait_for(self, predicate: Any, timeout: float, what: str) -> list[OtlpPoint]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            points = self.snapshot()
            if predicate(points):
                return points
            time.sleep(0.1)
        names = sorted({point.name for point in self.snapshot()})
        raise AssertionError(f"timed out after {timeout} s waiting for {what}; got {names}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
