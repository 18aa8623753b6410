"""`clipgen serve` under load: 1, 4 and 16 concurrent clients against sequential sample.py-style calls.

    python bench/bench_serve.py --run runs/demo/language-free                # the run's own settings
    python bench/bench_serve.py --run runs/demo/language-free --top-k 0      # sampled, not greedy
    python bench/bench_serve.py --run runs/demo/language-free --top-k 0 --random-shape 8,512,8
        # the same run with a random 8-layer × 512 transformer (8 heads) in its place: wider
        # matrix products, where batching is likelier to change the reduction order

The same requests (one unseen shapes-zh prompt and seed each) are answered first one at a time by
the pipeline in this process, as sample.py would (one call per request), then by a server on a
loopback port with C clients sending them concurrently. For each: requests/s, p50/p95 latency,
and for the server the requests per sampler call (its batching) and how many images differ from
the sequential ones: every request must be answered, and an image that differs was changed by
sharing a batch (floating-point reduction order), since each image draws from its own stream.
The last line gives the ratios to sequential, measured in this run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_name  # noqa: E402
from clipgen.data.shapes import full_prompts  # noqa: E402
from clipgen.serve.app import png_base64  # noqa: E402
from clipgen.serve.client import call, serving  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def sequential(run: Path, bodies: list[dict]) -> tuple[float, list[float], list[list[str]]]:
    from clipgen.pipeline import ClipGenPipeline

    pipe = ClipGenPipeline.from_pretrained(run)
    settings = lambda b: {k: v for k, v in b.items() if k not in ("prompt", "num_images", "seed")}  # noqa: E731
    pipe(bodies[0]["prompt"], num_images=bodies[0]["num_images"], seed=0, **settings(bodies[0]))  # warm-up
    latencies, images = [], []
    start = time.perf_counter()
    for body in bodies:
        t0 = time.perf_counter()
        drawn = pipe(body["prompt"], num_images=body["num_images"], seed=body["seed"], **settings(body))[0]
        latencies.append(time.perf_counter() - t0)
        images.append([png_base64(image) for image in drawn])
    return time.perf_counter() - start, latencies, images


def concurrent(url: str, run_name: str, bodies: list[dict], clients: int, deadline_s: float) -> tuple[float, list[float], list]:
    """Send every body once, `clients` at a time; (wall seconds, latencies, answers in order)."""
    answers: list = [None] * len(bodies)
    latencies: list[float] = [0.0] * len(bodies)
    next_index = iter(range(len(bodies)))
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            t0 = time.perf_counter()
            status, reply, _ = call(url + "/api/generate", {**bodies[i], "run": run_name}, timeout=deadline_s)
            latencies[i] = time.perf_counter() - t0
            answers[i] = reply["results"][0]["images"] if status == 200 else f"{status}: {reply}"

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(deadline_s)
    return time.perf_counter() - start, latencies, answers


def random_copy(run: Path, shape: str, out: Path) -> Path:
    """`run` with a random-weight transformer of LAYERS,WIDTH,HEADS in place of its own."""
    import shutil

    import torch

    from clipgen.config import to_dict
    from clipgen.models.gpt import ConditionTransformer, load_gpt, save_gpt

    layers, width, heads = (int(x) for x in shape.split(","))
    config = load_gpt(run / "model").config
    config = type(config)(**{**to_dict(config), "n_layer": layers, "n_embd": width, "n_head": heads})
    shutil.copytree(run, out, ignore=shutil.ignore_patterns("checkpoints", "tb", "samples"))
    torch.manual_seed(0)
    save_gpt(ConditionTransformer(config), out / "model")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/demo/language-free")
    parser.add_argument("--requests", type=int, default=48, help="requests per measurement (default 48)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--num-images", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--top-k", type=int, default=None, help="default: the run's own")
    parser.add_argument("--temperature", type=float, default=None, help="default: the run's own")
    parser.add_argument("--deadline", type=float, default=600, help="seconds any one measurement may take")
    parser.add_argument("--random-shape", default="", metavar="LAYERS,WIDTH,HEADS",
                        help="serve a copy of the run with a random transformer of this shape instead")
    args = parser.parse_args()
    run = Path(args.run)
    if not (run / "condition.yaml").is_file():
        sys.exit(f"bench_serve: {run} is not a condition-transformer run (train one, or run `clipgen demo` first)")
    if args.random_shape:
        import tempfile

        run = random_copy(run, args.random_shape, Path(tempfile.mkdtemp(prefix="bench_serve_")) / run.name)
    overrides = {k: v for k, v in (("top_k", args.top_k), ("temperature", args.temperature)) if v is not None}
    bodies = [{"prompt": prompt, "num_images": args.num_images, "seed": 1000 + i, **overrides}
              for i, (prompt, _) in enumerate(full_prompts(args.requests, seed=7))]  # fmt: skip
    print(f"# bench_serve: {cpu_name()}, {os.cpu_count()} cores; run {args.run}"
          f"{' with a random ' + args.random_shape + ' transformer' if args.random_shape else ''}; {args.requests} requests of "
          f"{args.num_images} image(s); --max-batch {args.max_batch}; settings {overrides or 'the run’s own'}")
    seq_s, seq_lat, reference = sequential(run, bodies)
    rows = [("sequential (pipeline, one call per request)", seq_s, seq_lat, None, None)]
    with serving([run], "--max-batch", str(args.max_batch)) as url:
        call(url + "/api/generate", {**bodies[0], "seed": 0})  # warm-up
        for clients in args.clients:
            before = call(url + "/api/health")[1]
            wall, latencies, answers = concurrent(url, run.resolve().name, bodies, clients, args.deadline)
            after = call(url + "/api/health")[1]
            failed = [a for a in answers if not isinstance(a, list)]
            if failed:
                sys.exit(f"bench_serve: {len(failed)} of {len(bodies)} requests failed at {clients} clients, e.g. {failed[0]}")
            changed = sum(a != r for answer, ref in zip(answers, reference) for a, r in zip(answer, ref))
            per_call = (after["requests"] - before["requests"]) / max(1, after["batches"] - before["batches"])
            rows.append((f"server, {clients} client(s)", wall, latencies, per_call, changed))
    images = args.requests * args.num_images
    print(f"{'':46} {'req/s':>7} {'p50 s':>7} {'p95 s':>7} {'req/call':>8} {'changed':>9}")
    for name, wall, latencies, per_call, changed in rows:
        extra = "" if per_call is None else f" {per_call:>8.1f} {changed:>4}/{images:<4}"
        print(f"{name:46} {len(latencies) / wall:>7.2f} {percentile(latencies, 50):>7.3f} {percentile(latencies, 95):>7.3f}{extra}")
    ratios = ", ".join(f"{name.split(', ')[1]} {seq_s / wall:.2f}x" for name, wall, *_ in rows[1:])
    print(f"requests/s against sequential: {ratios}")


if __name__ == "__main__":
    main()
