"""`clipgen serve`: a page to try prompts on one run or several side by side, and a JSON API.

    clipgen serve RUN [RUN ...] [--host 127.0.0.1] [--port 7860] [--max-batch N] [--device auto]

`clipgen serve runs/demo/*/` after `clipgen demo` serves every generator the demo trained (the
directories that are not runs are skipped). Needs the serve extra: pip install -e ".[serve]".
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="condition-transformer run directories")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--max-batch", type=int, default=16, help="most images drawn in one sampler call (default 16)")
    parser.add_argument("--max-queue", type=int, default=0, help="most images waiting before requests get 503 (default 8 batches)")
    parser.add_argument("--batch-wait-ms", type=float, default=10.0, help="how long a batch waits to fill (default 10 ms)")
    parser.add_argument("--device", default="auto")


def run(args: argparse.Namespace) -> int:
    def fail(message: str) -> int:
        print(f"clipgen serve: error: {message}", file=sys.stderr)
        return 2

    if not 0 <= args.port <= 65535:
        return fail(f"--port must be in 0..65535, got {args.port}")
    if args.max_batch < 1 or args.max_queue < 0 or args.batch_wait_ms < 0:
        return fail("--max-batch must be ≥ 1, --max-queue and --batch-wait-ms ≥ 0")
    if args.max_queue and args.max_queue < args.max_batch:
        return fail(f"--max-queue ({args.max_queue}) must hold at least one batch (--max-batch {args.max_batch})")
    try:
        import uvicorn
        import starlette  # noqa: F401
    except ImportError:
        return fail('the server needs the serve extra: pip install -e ".[serve]"')
    from clipgen.engine.logging import setup_console_logging
    from clipgen.serve.app import LOOPBACK_HOSTS, create_app
    from clipgen.serve.runs import find_runs

    setup_console_logging(True)
    loopback = args.host in LOOPBACK_HOSTS
    try:
        runs = find_runs(args.runs)
        app = create_app(runs, device=args.device, max_batch=args.max_batch, max_queue_rows=args.max_queue or None,
                         wait_s=args.batch_wait_ms / 1000, allowed_hosts=LOOPBACK_HOSTS if loopback else None)  # fmt: skip
        app.state.batcher.wait_ready()  # the runs load on the inference thread; a broken one stops us here
    except (ValueError, FileNotFoundError, OSError) as err:
        return fail(str(err))
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning"))
    host = f"[{args.host}]" if ":" in args.host else args.host
    reach = ("this machine only; --host 0.0.0.0 serves other machines too" if loopback
             else "reachable from other machines: anyone who can reach it can draw images")  # fmt: skip
    print(f"clipgen serve: {len(runs)} run(s): {', '.join(runs)}", file=sys.stderr)
    print(f"clipgen serve: open http://{host}:{args.port}/ (bound to {args.host}: {reach})", file=sys.stderr, flush=True)
    try:
        server.run()
    except SystemExit:  # uvicorn exits this way when it cannot bind
        pass
    return 0 if server.started else fail(f"could not serve on {args.host}:{args.port} (is the port in use?)")
