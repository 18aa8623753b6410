"""The Starlette app: the page at `/`, and the JSON API.

    GET  /api/health    200 {"status": "ok", "runs": N, "batches": B, "requests": R} once every run is loaded
                        (503 {"status": "loading"} before, or when the inference thread is gone)
    GET  /api/runs      {"runs": [NAME, ...], "defaults": {NAME: settings}, "limits": {...}}
    POST /api/generate  {"prompt": ..., "run"?, "num_images"?, "seed"?, "guidance_scale"?, "top_k"?,
                         "top_p"?, "temperature"?, "candidates"?}
                        -> {"results": [{"run", "images": [base64 PNG], "seconds", "seed", "settings"}]}

A bad request is a 4xx whose JSON `error` the page shows; a full queue is 503 with Retry-After.
Nothing is read from disk on a client's behalf: the only routes are these four. A POST must say
it is JSON (which a page on another site cannot send here without a CORS preflight, never
answered), and a server bound to loopback answers only loopback host names (no DNS rebinding).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import logging
from concurrent.futures import CancelledError
from dataclasses import asdict
from importlib import resources

from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from clipgen.sampling import fresh_seed
from clipgen.serve.batcher import Batcher, QueueFull
from clipgen.serve.params import MAX_BODY_BYTES, limits, parse_generate

log = logging.getLogger("clipgen.serve")

PAGE_HEADERS = {
    # the page's own inline script and style, images as data: URLs, requests to this server only
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
}


def png_base64(image) -> str:
    """The PNG bytes `image.save("x.png")` writes (as sample.py does), base64-encoded."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]", "::1"]


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    # whatever the message holds, the reply is valid UTF-8
    message = str(message).encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(413, f"the request body is over {MAX_BODY_BYTES // 1024} KiB")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise HTTPException(413, f"the request body is over {MAX_BODY_BYTES // 1024} KiB")
    return bytes(body)


def create_app(run_dirs: dict[str, Path], device: str = "auto", max_batch: int = 16, max_queue_rows: int | None = None,
               wait_s: float = 0.01, allowed_hosts: list[str] | None = None) -> Starlette:  # fmt: skip
    """An app answering with the runs in `run_dirs` (name -> directory), loaded on the inference
    thread (`app.state.batcher.wait_ready()` waits for them); at most `max_batch` images per
    sampler call, `max_queue_rows` images waiting (default: 8 batches). `allowed_hosts`: the
    Host headers answered (None: any)."""
    from clipgen.serve.runs import load_pipelines

    names = list(run_dirs)
    page = resources.files("clipgen.serve").joinpath("page.html").read_text(encoding="utf-8")
    pipelines: dict = {}

    def run_batch(run: str, requests: list) -> list[list[str]]:
        # one prompt per request: its images, as base64 PNG
        return [[png_base64(image) for image in groups[0]] for groups in pipelines[run].run_requests(requests)]

    batcher = Batcher(run_batch, names, max_batch, max_queue_rows or 8 * max_batch, wait_s,
                      setup=lambda: pipelines.update(load_pipelines(run_dirs, device)))  # fmt: skip

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(page, headers=PAGE_HEADERS)

    async def health(request: Request) -> JSONResponse:
        if not batcher.ready:
            return JSONResponse({"status": "loading" if batcher.setup_error is None else "failed"}, status_code=503)
        # how many sampler calls served how many requests so far: batching at work
        return JSONResponse({"status": "ok", "runs": len(names), "batches": batcher.batches, "requests": batcher.batched_requests})

    async def runs(request: Request) -> JSONResponse:
        if not batcher.ready:
            return _error(503, "the server is still loading its runs", {"Retry-After": "5"})
        defaults = {name: asdict(pipe.sampling) for name, pipe in pipelines.items()}
        return JSONResponse({"runs": names, "defaults": defaults, "limits": limits(max_batch)})

    async def generate(request: Request) -> JSONResponse:
        if not batcher.ready:
            return _error(503, "the server is still loading its runs", {"Retry-After": "5"})
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return _error(415, "send the request as JSON, with Content-Type: application/json")
        try:
            params = parse_generate(await _read_body(request), names, max_batch)
            seed = fresh_seed() if params.seed is None else params.seed
            targets = [params.run] if params.run else names
            prepared = [pipelines[name].request(params.prompt, params.num_images, seed, **params.settings()) for name in targets]
            futures = batcher.submit([(name, r, r.rows) for name, r in zip(targets, prepared)])
        except QueueFull as err:
            return _error(503, str(err), {"Retry-After": str(err.retry_after_s)})
        except ValueError as err:  # BadRequest, or a setting the pipeline refuses
            return _error(400, str(err))
        results = []
        for name, prepared_request, future in zip(targets, prepared, futures):
            try:
                images, seconds = await asyncio.wrap_future(future)
            except (CancelledError, asyncio.CancelledError):
                if not future.cancelled():
                    raise  # this handler itself is being cancelled: let it be
                return _error(503, "the server is shutting down")
            except ValueError as err:  # e.g. a prompt this run's tokenizer cannot read
                return _error(400, f"{name}: {err}")
            except Exception:  # logged by the batcher; the client gets no internals
                return _error(500, f"{name}: sampling failed; the server's log says why")
            results.append({"run": name, "images": images, "seconds": round(seconds, 3), "seed": seed,
                            "settings": asdict(prepared_request.settings)})  # fmt: skip
        return JSONResponse({"results": results})

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, exc.detail, getattr(exc, "headers", None))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await asyncio.to_thread(batcher.close)

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/health", health),
            Route("/api/runs", runs),
            Route("/api/generate", generate, methods=["POST"]),
        ],
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)] if allowed_hosts else [],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    return app
