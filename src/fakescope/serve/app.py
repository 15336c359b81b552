"""The FastAPI app: routes, auth, admission (503), timeouts (504), access logs and metrics.

`create_app(detector_or_factory, settings)` builds it; the model loads once, when the app
starts. `serve(...)` loads the detector named on the command line and runs the app under
uvicorn; `python -m fakescope.serve --model CKPT` does the same from a shell.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Callable

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from fakescope import __version__
from fakescope.inference.detector import Detector
from fakescope.serve.detection import DetectionService
from fakescope.serve.metrics import Metrics
from fakescope.serve.settings import MB, ServeSettings, resolve_api_key
from fakescope.serve.uploads import UploadRejected, read_uploads

STATIC_DIR = Path(__file__).resolve().parent / "static"
ACCESS_LOGGER = "fakescope.serve.access"
log = logging.getLogger(__name__)
access_log = logging.getLogger(ACCESS_LOGGER)

# The page loads only its own files; heat maps arrive as data: URIs, previews as blob: URLs.
_PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; frame-ancestors 'none'"
)

_DETECT_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                },
                "required": ["files"],
            }
        }
    },
}


class _Server:
    """What the routes share: settings, the detection service once loaded, admission, metrics."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.service: DetectionService | None = None
        self.executor: ThreadPoolExecutor | None = None
        # Requests admitted and not finished; beyond `max_queue` a request gets 503 at once.
        self.slots = threading.BoundedSemaphore(settings.max_queue)
        self.in_flight = 0
        self._count_lock = threading.Lock()
        self.metrics = Metrics(self._gauges)

    @property
    def ready(self) -> bool:
        return self.service is not None and self.service.batcher.alive

    def start(self, detector: Detector) -> None:
        self.service = DetectionService(detector, self.settings)
        self.service.start()
        self.executor = ThreadPoolExecutor(
            self.settings.request_threads, thread_name_prefix="fakescope-request"
        )

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)

    def admit(self) -> None:
        if not self.slots.acquire(blocking=False):
            raise HTTPException(
                503,
                f"the server is busy ({self.settings.max_queue} requests in progress); "
                "retry shortly",
                headers={"Retry-After": str(self.settings.retry_after_s)},
            )
        with self._count_lock:
            self.in_flight += 1

    def release(self) -> None:
        with self._count_lock:
            self.in_flight -= 1
        self.slots.release()

    def _gauges(self) -> dict[str, tuple[str, str, float]]:
        batcher = self.service.batcher if self.service else None
        return {
            "fakescope_ready": (
                "gauge",
                "1 when the model is loaded and the batch worker runs.",
                float(self.ready),
            ),
            "fakescope_requests_in_flight": (
                "gauge",
                "Detection requests admitted and not finished.",
                self.in_flight,
            ),
            "fakescope_model_batches_total": (
                "counter",
                "Forwards of the model (one per micro-batch).",
                batcher.batches if batcher else 0,
            ),
            "fakescope_model_crops_total": (
                "counter",
                "Face cuts scored by the model (one per card margin per face).",
                batcher.crops_scored if batcher else 0,
            ),
        }


def create_app(
    detector_or_factory: Detector | Callable[[], Detector], settings: ServeSettings | None = None
) -> FastAPI:
    """The app; a factory is called once at start-up, on a thread, before requests are served."""
    settings = settings or ServeSettings()
    server = _Server(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        source = detector_or_factory
        detector = source if isinstance(source, Detector) else await asyncio.to_thread(source)
        server.start(detector)
        log.info("model ready: %s", json.dumps(detector.describe()))
        try:
            yield
        finally:
            server.stop()

    app = FastAPI(
        title="fakescope",
        version=__version__,
        description="Is this face image or video a deepfake? Verdicts with calibrated P(fake).",
        lifespan=lifespan,
        # FastAPI's own /docs page loads Swagger UI from a CDN; ours serves it from a package.
        docs_url=None,
        redoc_url=None,
    )
    app.state.server = server
    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title="fakescope API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization"],
        )

    @app.middleware("http")
    async def observe(request: Request, call_next):
        """Request id, security headers, one JSON access-log line and the metrics, per request."""
        started = time.perf_counter()
        request.state.request_id = uuid.uuid4().hex[:16]
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            response.headers["X-Request-ID"] = request.state.request_id
            response.headers["X-Content-Type-Options"] = "nosniff"
            return response
        finally:
            seconds = time.perf_counter() - started
            route = getattr(request.scope.get("route"), "path", "unmatched")
            server.metrics.observe(route, request.method, status, seconds)
            entry = {
                "request_id": request.state.request_id,
                "method": request.method,
                "path": request.url.path,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "client": request.client.host if request.client else None,
                **getattr(request.state, "upload_summary", {}),
            }
            access_log.info(json.dumps(entry))

    def require_api_key(request: Request) -> None:
        if settings.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        # compare_digest: the time taken does not reveal how much of the key matched.
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), settings.api_key.encode()
        ):
            raise HTTPException(
                401, "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"}
            )

    def require_ready() -> DetectionService:
        if not server.ready:
            raise HTTPException(
                503,
                "the model is not loaded yet",
                headers={"Retry-After": str(settings.retry_after_s)},
            )
        return server.service

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        """Readiness: the model is loaded and the batch worker runs."""
        return JSONResponse({"ready": server.ready}, status_code=200 if server.ready else 503)

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        """Prometheus text format: requests by route and status, latencies, batches."""
        return PlainTextResponse(server.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models", tags=["detection"], dependencies=[Depends(require_api_key)])
    def models() -> dict:
        """The loaded detector: its card and the threshold in use."""
        detector = require_ready().detector
        return {"models": [{**detector.describe(), "card": detector.card.model_dump(mode="json")}]}

    @app.post(
        "/v1/detect",
        tags=["detection"],
        dependencies=[Depends(require_api_key)],
        openapi_extra={"requestBody": _DETECT_BODY},
    )
    async def detect(request: Request, explain: bool = False) -> JSONResponse:
        """One or more images, or one video, as multipart form files -> a verdict per file.

        explain=true adds a Grad-CAM heat map (PNG data URI) per scored face (slower).
        Errors: 400 malformed request, 401 no key, 413 too large (bytes or pixels), 415 not an
        image or video, 422 unreadable file, 503 busy (Retry-After), 504 timeout.
        """
        service = require_ready()
        server.admit()
        handed_over = False
        try:
            async with asyncio.timeout(settings.request_timeout_s):
                started = time.perf_counter()
                uploads = await read_uploads(request, settings)
                request.state.upload_summary = {
                    "files": len(uploads),
                    "bytes": sum(len(u.data) for u in uploads),
                }
                upload_ms = round((time.perf_counter() - started) * 1000, 2)
                work = server.executor.submit(
                    service.detect, uploads, explain, request.state.request_id
                )
                # The slot is freed when the work ends, even if the client has been answered 504.
                work.add_done_callback(lambda _: server.release())
                handed_over = True
                payload = await asyncio.wrap_future(work)
        except UploadRejected as error:
            raise HTTPException(error.status, error.message) from None
        except TimeoutError:
            raise HTTPException(
                504, f"the request took longer than {settings.request_timeout_s:g} s"
            ) from None
        finally:
            if not handed_over:
                server.release()
        payload["timing_ms"] = {
            "upload": upload_ms,
            "processing": payload.pop("processing_ms"),
            "total": round((time.perf_counter() - started) * 1000, 2),
        }
        return JSONResponse(payload)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(
            STATIC_DIR / "index.html", headers={"Content-Security-Policy": _PAGE_POLICY}
        )

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def configure_access_log() -> None:
    """Access lines go to stderr as bare JSON, one per line, whatever the root format is."""
    if access_log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)
    access_log.propagate = False


def serve(
    model: str = "default",
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    api_key_file: Path | None = None,
    keep_uploads: Path | None = None,
    max_image_mb: float = 20,
    max_video_mb: float = 200,
    max_pixels: int | None = None,
    max_queue: int = 32,
    timeout_s: float = 60,
    cors_origins: tuple[str, ...] = (),
    no_faces: bool = False,
    threshold: float | None = None,
    backend: str = "auto",
) -> None:
    """Load the detector, then serve the API and the page until SIGINT/SIGTERM.

    Raises FileNotFoundError / CheckpointError (model), ApiKeyError (key file) and ValueError
    (a limit out of range) before the server starts, so the caller can print a clean error.
    """
    import uvicorn

    from fakescope.inference.loading import load_detector

    settings = ServeSettings(
        max_image_bytes=int(max_image_mb * MB),
        max_video_bytes=int(max_video_mb * MB),
        max_queue=max_queue,
        request_timeout_s=timeout_s,
        api_key=resolve_api_key(api_key_file),
        cors_origins=tuple(cors_origins),
        keep_uploads=keep_uploads,
        **({"max_pixels": max_pixels} if max_pixels else {}),
    )
    options: dict = {"threshold": threshold, "max_pixels": settings.max_pixels}
    if no_faces:
        options["use_faces"] = False
    detector = load_detector(model, backend=backend, **options)
    configure_access_log()
    if host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        log.warning("serving on %s without an API key: anyone who can reach it can use it", host)
    uvicorn.run(
        create_app(detector, settings), host=host, port=port, access_log=False, log_level="info"
    )
