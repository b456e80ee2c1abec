"""The FastAPI app: TF Serving's REST routes, health, metrics, auth and request limits."""
import contextlib
import hmac
import json
import time
from typing import Dict, List, Optional

from absl import logging
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from slm_tf.errors import UserError
from slm_tf.serving.config import ServeConfig
from slm_tf.serving.metrics import Metrics
from slm_tf.serving.repository import Repository

OPEN_PATHS = ("/healthz", "/readyz")  # probes carry no key


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


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


def _request_key(request: Request) -> Optional[str]:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key")


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


def parse_predict(body: bytes, cfg: ServeConfig) -> Dict:
    """TF Serving's predict request -> ``{"texts", "columnar"}``; errors are ApiErrors."""
    try:
        req = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "malformed JSON in request body") from None
    if not isinstance(req, dict) or ("instances" in req) == ("inputs" in req):
        raise ApiError(400, 'the request must be a JSON object with exactly one of '
                       '"instances" (row format) or "inputs" (columnar format)')
    sig = req.get("signature_name", "serving_default")
    if sig not in ("serving_default", "serve_text"):
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
    return {"texts": texts, "columnar": columnar}


def _route_of(path: str) -> str:
    """A low-cardinality metrics label (never the raw path)."""
    if path.endswith(":predict"):
        return "predict"
    if path.startswith("/v1/models"):
        return "metadata" if path.endswith("/metadata") else "status"
    return path if path in ("/healthz", "/readyz", "/metrics") else "other"


def create_app(cfg: ServeConfig, repo: Optional[Repository] = None,
               metrics: Optional[Metrics] = None) -> FastAPI:
    """The app; the repository is loaded before serving and closed after the drain."""
    metrics = metrics or Metrics()
    keys = read_api_keys(cfg.api_keys_file) if cfg.api_keys_file else None
    state = {"repo": repo}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if state["repo"] is None:
            state["repo"] = Repository(cfg, metrics)
        state["repo"].start_polling()
        yield
        # uvicorn has stopped accepting and drained in-flight requests by now.
        state["repo"].close()
        logging.info("drained: every accepted request answered; stopping")

    app = FastAPI(title="slm_tf server", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    if cfg.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware
        app.add_middleware(CORSMiddleware, allow_origins=cfg.cors_origins,
                           allow_methods=["GET", "POST"], allow_headers=["*"])

    @app.middleware("http")
    async def guard(request: Request, call_next):
        start = time.perf_counter()
        route = _route_of(request.url.path)
        if keys is not None and request.url.path not in OPEN_PATHS \
                and not key_ok(_request_key(request), keys):
            response = JSONResponse({"error": "missing or wrong API key"}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
        else:
            try:
                response = await call_next(request)
            except Exception as e:  # noqa: BLE001 - never a stack trace to the client
                logging.error("internal error on %s: %s", route, type(e).__name__)
                response = JSONResponse({"error": "internal server error"}, status_code=500)
        metrics.requests.labels(route, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - start)
        return response

    @app.exception_handler(ApiError)
    async def api_error(request, e: ApiError):
        return JSONResponse({"error": e.message}, status_code=e.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, e):
        message = {404: "not found", 405: "method not allowed"}.get(e.status_code, "error")
        return JSONResponse({"error": message}, status_code=e.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, e):
        return JSONResponse({"error": "invalid request"}, status_code=400)

    def servable(name: str, version: Optional[str]):
        if version is not None and not version.isdigit():
            raise ApiError(404, "version must be a number")
        s = state["repo"].get(name, int(version) if version is not None else None)
        if s is None:
            if state["repo"].get(name) is None:
                raise ApiError(404, f"model {name!r} is not served")
            raise ApiError(404, f"model {name!r} has no version {version}")
        return s

    def status(name: str, version: Optional[str]):
        if version is not None:
            versions = [servable(name, version).version]
        else:
            servable(name, None)
            versions = sorted(state["repo"].models[name], reverse=True)
        return {"model_version_status": [
            {"version": str(v), "state": "AVAILABLE",
             "status": {"error_code": "OK", "error_message": ""}} for v in versions]}

    @app.get("/v1/models/{name}")
    async def model_status(name: str):
        """TF Serving's GetModelStatus: every loaded version."""
        return status(name, None)

    @app.get("/v1/models/{name}/versions/{version}")
    async def version_status(name: str, version: str):
        """GetModelStatus of one version."""
        return status(name, version)

    def metadata(name: str, version: Optional[str]):
        s = servable(name, version)
        return {"model_spec": {"name": name, "signature_name": "", "version": str(s.version)},
                "metadata": {"signature_def": {"signature_def": {
                    "serving_default": s.predictor.signature()}},
                    "task": s.predictor.task, "labels": getattr(s.predictor, "labels", None)}}

    @app.get("/v1/models/{name}/metadata")
    async def model_metadata(name: str):
        """GetModelMetadata of the newest version."""
        return metadata(name, None)

    @app.get("/v1/models/{name}/versions/{version}/metadata")
    async def version_metadata(name: str, version: str):
        """GetModelMetadata of one version."""
        return metadata(name, version)

    async def predict(request: Request, name: str, version: Optional[str]):
        s = servable(name, version)
        req = parse_predict(await _body(request, cfg.max_body_bytes), cfg)
        texts = req["texts"]
        start = time.perf_counter()
        preds = await s.batcher.submit(texts)
        metrics.batch_wait.labels(name).observe(time.perf_counter() - start)
        for t, p in zip(texts, preds):
            metrics.input_chars.labels(name).observe(len(t))
            metrics.labels.labels(name, str(s.version), p["label"]).inc()
            metrics.confidence.labels(name).observe(p["confidence"])
        s.drift.observe(preds)
        # PII-free: lengths and labels only, never the texts (per request: verbosity 1).
        logging.debug("predict model=%s version=%d texts=%d chars=%s labels=%s", name,
                     s.version, len(texts), [len(t) for t in texts][:8],
                     [p["label"] for p in preds][:8])
        if req["columnar"]:
            return {"outputs": {k: [p[k] for p in preds] for k in preds[0]},
                    "model_version": str(s.version)}
        return {"predictions": preds, "model_version": str(s.version)}

    @app.post("/v1/models/{name}:predict")
    async def predict_latest(request: Request, name: str):
        """Predict with the newest version."""
        return await predict(request, name, None)

    @app.post("/v1/models/{name}/versions/{version}:predict")
    async def predict_version(request: Request, name: str, version: str):
        """Predict with a version pinned by URL."""
        return await predict(request, name, version)

    @app.get("/healthz")
    async def healthz():
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        """Readiness: every model has a loaded version."""
        repo = state["repo"]
        ready = repo is not None and all(repo.models.values())
        return JSONResponse({"status": "ready" if ready else "loading"},
                            status_code=200 if ready else 503)

    @app.get("/metrics")
    async def prometheus():
        """Prometheus exposition of the server's metrics."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
