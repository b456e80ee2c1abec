"""A bounded load generator for the server: N concurrent clients on one asyncio loop, each
with one keep-alive connection, sending predict requests until a time or request budget runs
out (a closed loop: each client sends its next request when the last one is answered)."""
import asyncio
import dataclasses
import http.client
import ipaddress
import json
import re
import socket
import time
import urllib.parse
from typing import Dict, List, Tuple

import numpy as np

from slm_tf.config import field, positive
from slm_tf.errors import UserError


@dataclasses.dataclass
class LoadTestConfig:
    """Options of scripts/loadtest.py (one flag each)."""
    url: str = field("http://127.0.0.1:8501", "The server (loopback addresses only).")
    model: str = field("", "Name of the served model to call (required).")
    concurrency: int = field(32, "Concurrent clients, one keep-alive connection each.",
                             validate=positive, rule="> 0")
    duration_s: float = field(30.0, "How long to send requests (at most 600).",
                              validate=lambda x: x is not None and 0 < x <= 600,
                              rule="in (0, 600]")
    max_requests: int = field(1_000_000, "Stop after this many requests in total.",
                              validate=positive, rule="> 0")
    texts_per_request: int = field(1, "Texts in each request.", validate=positive, rule="> 0")
    texts: list = field(["I lost my card yesterday", "what is the exchange rate for euros",
                         "my top up did not go through", "how do I get a refund"],
                        "Texts sent in turn.")
    api_key: str = field("", "Sent as 'Authorization: Bearer <key>' when given.")
    output: str = field("", "Also write the JSON report here.")


def require_loopback(url: str) -> urllib.parse.SplitResult:
    """Parses ``url`` and refuses any host that is not a loopback address."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise UserError(f"--url={url}: give http://127.0.0.1:<port>")
    try:
        addrs = {ai[4][0] for ai in socket.getaddrinfo(parts.hostname, parts.port or 80)}
    except socket.gaierror:
        raise UserError(f"--url={url}: cannot resolve {parts.hostname}") from None
    if not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs):
        raise UserError(f"--url={url}: the load test only targets loopback hosts "
                        "(127.0.0.1, ::1, localhost), never a shared server")
    return parts


def _scrape(parts, headers) -> Dict[str, float]:
    """Sums and counts of the server's latency histograms (for the time breakdown); empty
    when the server is gone (a load test across a SIGTERM)."""
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", "/metrics", headers=headers)
        text = conn.getresponse().read().decode()
    except OSError:
        return {}
    finally:
        conn.close()
    out = {}
    for name in ("slm_request_seconds", "slm_batch_seconds", "slm_batch_size",
                 "slm_predict_wait_seconds"):
        for kind in ("sum", "count"):
            vals = re.findall(rf'^{name}_{kind}\{{[^}}]*(?:route="predict"|model=)[^}}]*\}} '
                              r'([0-9.e+-]+)$', text, re.M)
            out[f"{name}_{kind}"] = sum(float(v) for v in vals)
    return out


class _Connection:
    """One keep-alive HTTP/1.1 connection on asyncio streams.

    Written here rather than taken from a client library: the load generator shares the 2
    cores with the server it measures, so it must cost far less per request than the server.
    http.client in 32 threads spends most of its time fighting for the GIL (measured: it
    alone capped the test near 600 requests/s and added its GIL waits to every latency), and
    httpx's async client costs several times this. The server always answers with
    Content-Length (JSON), which is all this parser needs.
    """

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def post(self, head: bytes, body: bytes) -> Tuple[int, bytes]:
        """Sends one request; returns (status, body)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        length, close = 0, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        data = await self.reader.readexactly(length)
        if close:
            self.close()
        return int(status_line.split()[1]), data

    def close(self) -> None:
        """Drops the connection (the next request opens a new one)."""
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def run_load(cfg: LoadTestConfig) -> Dict:
    """Runs the load; returns throughput, latency percentiles, errors and versions seen."""
    parts = require_loopback(cfg.url)
    if not cfg.model:
        raise UserError("--model: give the served model's name")
    headers = {"Content-Type": "application/json"}
    if cfg.api_key:
        headers["Authorization"] = f"Bearer {cfg.api_key}"
    path = f"/v1/models/{cfg.model}:predict"
    head = (f"POST {path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            + "Content-Length: ").encode()
    before = _scrape(parts, headers)
    latencies: List[float] = []
    errors: Dict[str, int] = {}
    first_seen: Dict[str, float] = {}
    sent = [0]
    start = time.time()
    stop_at = start + cfg.duration_s

    async def client(i: int) -> None:
        conn = _Connection(parts.hostname, parts.port)
        n = i
        while time.time() < stop_at and sent[0] < cfg.max_requests:
            sent[0] += 1
            texts = [cfg.texts[(n + j) % len(cfg.texts)] for j in range(cfg.texts_per_request)]
            n += 1
            body = json.dumps({"instances": texts}).encode()
            t0 = time.perf_counter()
            try:
                status, data = await asyncio.wait_for(conn.post(head, body), 30)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError,
                    IndexError) as e:
                status, data = type(e).__name__, b""
                conn.close()
            elapsed = time.perf_counter() - t0
            if status == 200:
                latencies.append(elapsed)
                version = json.loads(data).get("model_version", "")
                first_seen.setdefault(version, time.time())
            else:
                errors[str(status)] = errors.get(str(status), 0) + 1
        conn.close()

    async def clients() -> None:
        await asyncio.gather(*(client(i) for i in range(cfg.concurrency)))

    try:  # uvloop (installed with the server) makes the client cheaper still
        import uvloop
        uvloop.run(clients())
    except ImportError:
        asyncio.run(clients())
    wall = time.time() - start
    after = _scrape(parts, headers)
    d = {k: after[k] - before[k] for k in after if k in before}
    lat = np.asarray(latencies) * 1000
    report = {"url": cfg.url, "model": cfg.model, "concurrency": cfg.concurrency,
              "duration_s": round(wall, 2), "requests": len(latencies) + sum(errors.values()),
              "ok": len(latencies), "errors": sum(errors.values()), "errors_by_status": errors,
              "throughput_rps": round(len(latencies) / wall, 1),
              "texts_per_second": round(len(latencies) * cfg.texts_per_request / wall, 1),
              "latency_ms": {f"p{q}": round(float(np.percentile(lat, q)), 2) if len(lat) else None
                             for q in (50, 95, 99)},
              "versions_first_seen_unix": first_seen}
    if d.get("slm_request_seconds_count"):
        report["server_ms_per_request"] = round(
            1000 * d["slm_request_seconds_sum"] / d["slm_request_seconds_count"], 3)
        # Where a request's time goes: the whole request inside the server; queued + its batch;
        # the model's share (batch time spread over the requests in it).
        report["predict_wait_ms_per_request"] = round(
            1000 * d["slm_predict_wait_seconds_sum"] / d["slm_request_seconds_count"], 3)
        report["model_ms_per_request"] = round(
            1000 * d["slm_batch_seconds_sum"] / d["slm_request_seconds_count"], 3)
    if d.get("slm_batch_size_count"):
        report["mean_batch_size"] = round(d["slm_batch_size_sum"] / d["slm_batch_size_count"], 2)
    return report
