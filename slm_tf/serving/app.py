"""The ASGI app: TF Serving's REST routes, ``:generate`` streaming, health, metrics, auth and
request limits.

Plain Starlette routes and one pure-ASGI middleware, with orjson for JSON: the request path
of a 0.05 ms model is almost all framework time, and FastAPI's per-request work (an
``@app.middleware`` wrapper that runs each request in its own task and memory streams,
``jsonable_encoder`` walking every probability of every response) cost more than the rest of
the request together (README, Serving: "where a request's time goes").
"""
import asyncio
import contextlib
import hmac
import threading
import time
from typing import Dict, List, Optional

import orjson
from absl import logging
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from slm_tf.errors import UserError
from slm_tf.serving.config import ServeConfig
from slm_tf.serving.metrics import Metrics, record_predictions
from slm_tf.serving.repository import Repository

OPEN_PATHS = ("/healthz", "/readyz")  # probes carry no key
SIGNATURES = ("serving_default", "serve_text")


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def json_response(obj, status: int = 200, headers: Optional[Dict] = None) -> Response:
    """``obj`` as an ``application/json`` response (orjson)."""
    return Response(orjson.dumps(obj), status_code=status, headers=headers,
                    media_type="application/json")


def read_api_keys(path: str) -> List[bytes]:
    """Keys from ``path``, one a line (blank lines and # comments ignored)."""
    try:
        with open(path, encoding="utf-8") as f:
            keys = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
    except OSError as e:
        raise UserError(f"--api_keys_file={path}: cannot read it ({e.strerror})") from e
    if not keys:
        raise UserError(f"--api_keys_file={path} holds no key: put one key per line")
    return [k.encode("utf-8") for k in keys]


def key_ok(given: Optional[str], keys: List[bytes]) -> bool:
    """Constant-time check of ``given`` against every key (no early exit on a match)."""
    if not given:
        return False
    ok = False
    for k in keys:
        ok |= hmac.compare_digest(given.encode("utf-8"), k)
    return ok


def _scope_key(scope) -> Optional[str]:
    """The API key of a request: ``Authorization: Bearer <key>`` or ``X-API-Key``."""
    api_key = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            value = value.decode("latin-1")
            if value.lower().startswith("bearer "):
                return value[7:].strip()
        elif name == b"x-api-key":
            api_key = value.decode("latin-1")
    return api_key


async def _body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` bytes (also when chunked)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body of {declared} bytes exceeds the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _json_object(body: bytes) -> Dict:
    try:
        req = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "malformed JSON in request body") from None
    if not isinstance(req, dict):
        raise ApiError(400, "the request must be a JSON object")
    return req


def parse_predict(body: bytes, cfg: ServeConfig) -> Dict:
    """TF Serving's predict request -> ``{"texts", "columnar", "request"}``; errors are
    ApiErrors."""
    req = _json_object(body)
    if ("instances" in req) == ("inputs" in req):
        raise ApiError(400, 'the request must be a JSON object with exactly one of '
                       '"instances" (row format) or "inputs" (columnar format)')
    if req.get("signature_name", "serving_default") not in SIGNATURES:
        raise ApiError(400, "unknown signature_name; this model has serving_default")
    columnar = "inputs" in req
    items = req["inputs"] if columnar else req["instances"]
    if columnar and isinstance(items, dict):  # named columns: {"text": [...]}
        items = items.get("text")
    if isinstance(items, str):
        items = [items]
    if not isinstance(items, list) or not items:
        raise ApiError(400, "give a non-empty list of texts")
    if len(items) > cfg.max_texts:
        raise ApiError(413, f"{len(items)} texts in one request exceed the limit of "
                       f"{cfg.max_texts}; split the request")
    texts = []
    for i, item in enumerate(items):
        if isinstance(item, dict):  # row format with a named input: {"text": "..."}
            item = item.get("text")
        if not isinstance(item, str):
            raise ApiError(400, f"instance {i} is not a text (a string or {{\"text\": ...}})")
        if len(item) > cfg.max_chars:
            raise ApiError(413, f"instance {i} has {len(item)} characters, over the limit of "
                           f"{cfg.max_chars}")
        texts.append(item)
    return {"texts": texts, "columnar": columnar, "request": req}


def sampling(req: Dict, cfg: ServeConfig):
    """The request's sampling settings for a language model (400/413 with the reason)."""
    from slm_tf.serving.lm import Limits, sampling_from_request
    try:
        return sampling_from_request(req, Limits(cfg.max_new_tokens, cfg.default_new_tokens))
    except OverflowError as e:
        raise ApiError(413, str(e)) from None
    except ValueError as e:
        raise ApiError(400, str(e)) from None


def _route_of(path: str) -> str:
    """A low-cardinality metrics label (never the raw path)."""
    if path.endswith(":predict"):
        return "predict"
    if path.endswith(":generate"):
        return "generate"
    if path.startswith("/v1/models"):
        return "metadata" if path.endswith("/metadata") else "status"
    return path if path in ("/healthz", "/readyz", "/metrics") else "other"


def _sse(event: str, data: Dict) -> bytes:
    """One server-sent event (``event:`` name, one-line JSON ``data:``)."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class Guard:
    """Pure-ASGI middleware: API keys, request metrics, and a JSON 500 for anything
    unexpected (never a stack trace to the client)."""

    def __init__(self, app, keys: Optional[List[bytes]], metrics: Metrics,
                 counts: Optional[Dict[str, int]] = None):
        self.app, self.keys, self.metrics = app, keys, metrics
        # Requests the app began and finished (the drain's log line reports both).
        self.counts = counts if counts is not None else {"accepted": 0, "answered": 0}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        path = scope["path"]
        route = _route_of(path)
        status = [0]
        self.counts["accepted"] += 1

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
        if self.keys is not None and path not in OPEN_PATHS \
                and not key_ok(_scope_key(scope), self.keys):
            await json_response({"error": "missing or wrong API key"}, 401,
                                {"WWW-Authenticate": "Bearer"})(scope, receive, send_status)
        else:
            try:
                await self.app(scope, receive, send_status)
            except Exception as e:  # noqa: BLE001 - never a stack trace to the client
                logging.error("internal error on %s: %s", route, type(e).__name__)
                if not status[0]:
                    await json_response({"error": "internal server error"}, 500)(
                        scope, receive, send_status)
        self.counts["answered"] += bool(status[0])
        self.metrics.requests.labels(route, str(status[0])).inc()
        self.metrics.latency.labels(route).observe(time.perf_counter() - start)


def create_app(cfg: ServeConfig, repo: Optional[Repository] = None,
               metrics: Optional[Metrics] = None) -> Starlette:
    """The app; the repository is loaded before serving and closed after the drain."""
    metrics = metrics or Metrics()
    keys = read_api_keys(cfg.api_keys_file) if cfg.api_keys_file else None
    state = {"repo": repo}
    counts = {"accepted": 0, "answered": 0}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if state["repo"] is None:
            state["repo"] = Repository(cfg, metrics)
        state["repo"].start_polling()
        yield
        # uvicorn has stopped accepting and drained in-flight requests by now.
        state["repo"].close()
        accepted, answered = counts["accepted"], counts["answered"]
        if answered == accepted:
            logging.info("drained: every accepted request answered (%d accepted, %d answered); "
                         "stopping", accepted, answered)
        else:
            logging.warning("drained: %d of %d accepted requests answered (--drain_s ran out);"
                            " stopping", answered, accepted)

    def servable(request: Request):
        name = request.path_params["name"]
        version = request.path_params.get("version")
        if version is not None and not version.isdigit():
            raise ApiError(404, "version must be a number")
        s = state["repo"].get(name, int(version) if version is not None else None)
        if s is None:
            if state["repo"].get(name) is None:
                raise ApiError(404, f"model {name!r} is not served")
            raise ApiError(404, f"model {name!r} has no version {version}")
        return s

    async def status(request: Request):
        """TF Serving's GetModelStatus: every loaded version (or the one in the URL)."""
        s = servable(request)
        if "version" in request.path_params:
            versions = [s.version]
        else:
            versions = sorted(state["repo"].models[s.name], reverse=True)
        return json_response({"model_version_status": [
            {"version": str(v), "state": "AVAILABLE",
             "status": {"error_code": "OK", "error_message": ""}} for v in versions]})

    async def metadata(request: Request):
        """TF Serving's GetModelMetadata of the newest version (or the one in the URL)."""
        s = servable(request)
        return json_response({
            "model_spec": {"name": s.name, "signature_name": "", "version": str(s.version)},
            "metadata": {"signature_def": {"signature_def": {
                "serving_default": s.predictor.signature()}},
                "task": s.predictor.task, "labels": getattr(s.predictor, "labels", None)}})

    async def predict(request: Request):
        """TF Serving's Predict: one prediction per instance, batched with other requests."""
        s = servable(request)
        req = parse_predict(await _body(request, cfg.max_body_bytes), cfg)
        texts = req["texts"]
        params = sampling(req["request"], cfg) if s.predictor.streams else None
        start = time.perf_counter()
        preds = await s.batcher.submit(texts, params)
        name = s.name
        metrics.batch_wait.labels(name).observe(time.perf_counter() - start)
        chars = metrics.input_chars.labels(name)
        for t in texts:
            chars.observe(len(t))
        if "label" in preds[0]:
            record_predictions(metrics, name, str(s.version), preds)
            s.drift.observe(preds)
        # PII-free: lengths and labels only, never the texts (per request: verbosity 1).
        if logging.vlog_is_on(1):
            logging.debug("predict model=%s version=%d texts=%d chars=%s labels=%s", name,
                          s.version, len(texts), [len(t) for t in texts][:8],
                          [p.get("label") for p in preds][:8])
        if req["columnar"]:
            return json_response({"outputs": {k: [p[k] for p in preds] for k in preds[0]},
                                  "model_version": str(s.version)})
        return json_response({"predictions": preds, "model_version": str(s.version)})

    async def generate(request: Request):
        """Streams one prompt's continuation as server-sent events: ``token`` events (one per
        token's text), then ``end`` (stop reason, whole text) or ``error``."""
        s = servable(request)
        if not s.predictor.streams:
            raise ApiError(400, f"model {s.name!r} is a {s.predictor.task} model; :generate "
                           "serves language models (use :predict)")
        req = _json_object(await _body(request, cfg.max_body_bytes))
        prompt = req.get("prompt")
        if not isinstance(prompt, str):
            raise ApiError(400, 'give the text to continue as "prompt"')
        if len(prompt) > cfg.max_chars:
            raise ApiError(413, f"the prompt has {len(prompt)} characters, over the limit of "
                           f"{cfg.max_chars}")
        params = sampling(req, cfg)
        metrics.input_chars.labels(s.name).observe(len(prompt))
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()
        gone = threading.Event()

        def on_piece(piece: str) -> None:  # on the worker thread
            loop.call_soon_threadsafe(pieces.put_nowait, piece)

        # The pieces and then the job's result reach the loop in call order, so ``None``
        # (the job is done) arrives after every piece.
        job = asyncio.ensure_future(s.batcher.run_alone(
            lambda runner: s.predictor.stream(runner, prompt, params, on_piece, gone.is_set)))
        job.add_done_callback(lambda _: pieces.put_nowait(None))

        async def events():
            sent = 0
            try:
                while True:
                    piece = await pieces.get()
                    if piece is None:
                        break
                    yield _sse("token", {"text": piece, "index": sent})
                    sent += 1
                if job.exception() is not None:
                    yield _sse("error", {"error": "generation failed"})
                    return
                result = job.result()
                metrics.generated.labels(s.name).inc(sent)
                yield _sse("end", {"stop_reason": result["stop_reason"], "text": result["text"],
                                   "events": sent, "model_version": str(s.version)})
            finally:
                gone.set()  # a client that left stops the generation at its next token

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    async def healthz(request: Request):
        """Liveness: the process answers."""
        return json_response({"status": "ok"})

    async def readyz(request: Request):
        """Readiness: every model has a loaded version."""
        repo = state["repo"]
        ready = repo is not None and all(repo.models.values())
        return json_response({"status": "ready" if ready else "loading"}, 200 if ready else 503)

    async def prometheus(request: Request):
        """Prometheus exposition of the server's metrics."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def api_error(request, e: ApiError):
        return json_response({"error": e.message}, e.status)

    async def http_error(request, e):
        message = {404: "not found", 405: "method not allowed"}.get(e.status_code, "error")
        return json_response({"error": message}, e.status_code)

    base, pinned = "/v1/models/{name}", "/v1/models/{name}/versions/{version}"
    routes = [Route("/healthz", healthz), Route("/readyz", readyz),
              Route("/metrics", prometheus)]
    for prefix in (pinned, base):  # the pinned form first: {name} matches no "/"
        routes += [Route(prefix + ":predict", predict, methods=["POST"]),
                   Route(prefix + ":generate", generate, methods=["POST"]),
                   Route(prefix + "/metadata", metadata),
                   Route(prefix, status)]
    middleware = [Middleware(Guard, keys=keys, metrics=metrics, counts=counts)]
    if cfg.cors_origins:
        from starlette.middleware.cors import CORSMiddleware
        middleware.insert(0, Middleware(CORSMiddleware, allow_origins=cfg.cors_origins,
                                        allow_methods=["GET", "POST"], allow_headers=["*"]))
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan,
                     exception_handlers={ApiError: api_error,
                                         StarletteHTTPException: http_error})
