"""`clipgen serve`: the JSON API against a real server process on loopback, the batcher alone."""

import base64
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from clipgen.cli import main as clipgen_main
from clipgen.sampling import SamplingSettings, write_run_sampling
from clipgen.serve.batcher import Batcher, QueueFull
from gpt_helpers import gpt_args, make_stages
from clipgen.serve.client import call, serving

PROMPT = "左上有一个小的蓝色方块"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs (the second a copy with other settings) and a directory that is not a run."""
    root = make_stages(tmp_path_factory.mktemp("serve_stages"))
    first = root / "first-run"
    assert clipgen_main(gpt_args(root, first, 2, "sample.guidance_scale=1.5", "sample.top_k=3")) == 0
    second = root / "second-run"
    shutil.copytree(first, second)
    write_run_sampling(second, SamplingSettings(guidance_scale=1.0, temperature=0.0))
    return root, [first, second]


@pytest.fixture(scope="module")
def server(runs, tmp_path_factory):
    root, run_dirs = runs
    log = tmp_path_factory.mktemp("serve_log") / "serve.log"
    with serving([*run_dirs, root / "tokens"], "--max-batch", "8", log=log) as url:
        yield url
    assert "open http://127.0.0.1:" in log.read_text()  # says where, and that it is this machine only
    assert "bound to 127.0.0.1: this machine only" in log.read_text()


def pngs(result: dict) -> list[bytes]:
    return [base64.b64decode(data) for data in result["images"]]


def test_health_and_runs_name_only_the_runs_with_their_own_settings(server):
    assert call(server + "/api/health")[:2] == (200, {"status": "ok", "runs": 2, "batches": 0, "requests": 0})
    status, body, _ = call(server + "/api/runs")
    assert status == 200 and body["runs"] == ["first-run", "second-run"]  # tokens/ is not a run: skipped
    assert body["defaults"]["first-run"] == {"guidance_scale": 1.5, "top_k": 3, "top_p": 1.0, "temperature": 1.0, "candidates": 0}
    assert body["defaults"]["second-run"]["temperature"] == 0.0
    assert body["limits"]["max_images"] == 8


@pytest.mark.parametrize("extra", [[], ["--candidates", "4"]])
def test_a_request_alone_gives_the_images_sample_py_writes(server, runs, tmp_path, extra):
    import sample

    run_dir = runs[1][0]
    assert sample.main(["--ckpt", str(run_dir), "--prompt", PROMPT, "--num-images", "3", "--seed", "11",
                        "--out", str(tmp_path), *extra]) == 0  # fmt: skip
    body = {"prompt": PROMPT, "run": "first-run", "num_images": 3, "seed": 11}
    if extra:
        body["candidates"] = 4
    status, reply, _ = call(server + "/api/generate", body)
    assert status == 200 and [r["run"] for r in reply["results"]] == ["first-run"]
    assert pngs(reply["results"][0]) == [(tmp_path / f"0000_{k}.png").read_bytes() for k in range(3)]
    assert reply["results"][0]["seed"] == 11 and reply["results"][0]["seconds"] > 0


def test_every_run_answers_the_same_prompt_and_seed_with_its_own_settings(server):
    status, reply, _ = call(server + "/api/generate", {"prompt": "红色圆形", "num_images": 2, "seed": 4})
    assert status == 200 and [r["run"] for r in reply["results"]] == ["first-run", "second-run"]
    first, second = reply["results"]
    assert first["settings"]["top_k"] == 3 and second["settings"]["temperature"] == 0.0
    assert len(pngs(first)) == len(pngs(second)) == 2 and pngs(first) != pngs(second)
    # told otherwise, both use the settings given: same weights, same draws
    status, reply, _ = call(server + "/api/generate", {"prompt": "红色圆形", "num_images": 2, "seed": 4, "temperature": 0.7,
                                                        "guidance_scale": 1.5, "top_k": 3})  # fmt: skip
    assert pngs(reply["results"][0]) == pngs(reply["results"][1])
    # no seed: the server picks one and says which, so the images can be drawn again
    status, reply, _ = call(server + "/api/generate", {"prompt": "红色圆形", "run": "first-run"})
    seed = reply["results"][0]["seed"]
    again = call(server + "/api/generate", {"prompt": "红色圆形", "run": "first-run", "seed": seed})[1]
    assert pngs(again["results"][0]) == pngs(reply["results"][0])


def test_concurrent_requests_share_sampler_calls_and_each_gets_its_own_images(server):
    bodies = [{"prompt": p, "run": "first-run", "num_images": 1 + i % 2, "seed": 100 + i}
              for i, p in enumerate([PROMPT, "红色圆形", "三角形在中间", "一个绿色的十字"] * 3)]  # fmt: skip
    alone = [pngs(call(server + "/api/generate", body)[1]["results"][0]) for body in bodies]
    before = call(server + "/api/health")[1]
    with ThreadPoolExecutor(len(bodies)) as pool:
        replies = list(pool.map(lambda body: call(server + "/api/generate", body), bodies))
    after = call(server + "/api/health")[1]
    assert all(status == 200 for status, _, _ in replies)
    assert [pngs(reply["results"][0]) for _, reply, _ in replies] == alone
    served = after["requests"] - before["requests"]
    assert served == len(bodies) and after["batches"] - before["batches"] < served  # some shared a call


BAD = [
    ({"prompt": ""}, 400, "the prompt is empty"),
    ({"prompt": " \n\t"}, 400, "the prompt is empty"),
    ({"prompt": 3}, 400, "prompt must be a string"),
    ({"num_images": 2}, 400, "prompt is missing"),
    ({"prompt": "x" * 501}, 400, "at most 500"),
    ({"prompt": PROMPT, "run": "nope"}, 400, 'unknown run "nope"; the runs are first-run, second-run'),
    ({"prompt": PROMPT, "run": ["first-run"]}, 400, "unknown run"),
    ({"prompt": PROMPT, "num_images": 0}, 400, "num_images must be between 1 and 8"),
    ({"prompt": PROMPT, "num_images": 9}, 400, "num_images must be between 1 and 8"),
    ({"prompt": PROMPT, "num_images": 1.5}, 400, "num_images must be an integer"),
    ({"prompt": PROMPT, "num_images": True}, 400, "num_images must be an integer"),
    ({"prompt": PROMPT, "seed": -1}, 400, "seed must be between 0"),
    ({"prompt": PROMPT, "top_p": 0}, 400, "top_p must be in (0, 1]"),
    ({"prompt": PROMPT, "top_k": -1}, 400, "top_k must be between 0"),
    ({"prompt": PROMPT, "temperature": "hot"}, 400, "temperature must be a number"),
    ({"prompt": PROMPT, "guidance_scale": 1e9}, 400, "guidance_scale must be in [0, 100]"),
    ({"prompt": PROMPT, "num_images": 4, "candidates": 2}, 400, "candidates (2) must be at least num_images (4)"),
    ({"prompt": PROMPT, "candidates": 9}, 400, "candidates must be between 0 and 8"),
    ({"prompt": PROMPT, "steps": 3}, 400, 'unknown field "steps"'),
    ({"prompt": PROMPT, "\ud800": 3}, 400, 'unknown field "\\ud800"'),
    ({"prompt": PROMPT, "run": "\udfff"}, 400, "unknown run"),
    ({"prompt": "红\ud800色"}, 400, "lone surrogate"),
    ({"prompt": PROMPT, "temperature": 1e-40}, 400, "temperature must be 0 (greedy) or in [0.01, 100]"),
    (b"[" * 60000, 400, "nested too deeply"),
    (b'{"prompt": "x", "guidance_scale": NaN}', 400, "NaN"),
    (b"{not json", 400, "not JSON"),
    (b"[1, 2]", 400, "must be a JSON object"),
    ('{"prompt": "红"}'.encode("gbk"), 400, "not UTF-8"),
    (b'{"prompt": "' + b"x" * 70000 + b'"}', 413, "over 64 KiB"),
]


@pytest.mark.parametrize("body, status, message", BAD, ids=[m[:30] for _, _, m in BAD])
def test_bad_input_is_a_4xx_with_a_message_and_the_server_lives_on(server, body, status, message):
    got, reply, _ = call(server + "/api/generate", body)
    assert (got, message in reply.get("error", "")) == (status, True), reply
    assert call(server + "/api/health")[0] == 200


def test_only_json_from_loopback_host_names_is_answered(server):
    # a page on another site can POST text/plain without asking; JSON needs a preflight we never answer
    status, reply, _ = call(server + "/api/generate", b'{"prompt": "x"}', headers={"Content-Type": "text/plain"})
    assert status == 415 and "Content-Type: application/json" in reply["error"]
    # a DNS name rebound to 127.0.0.1 is not this server's name
    assert call(server + "/api/health", headers={"Host": "evil.example:7860"})[0] == 400
    assert call(server + "/api/health", headers={"Host": "localhost"})[0] == 200


def test_any_unicode_prompt_is_answered(server):
    for prompt in ["😀🎨 红色圆形", "ĉu ruĝa cirklo?", "\u200b\u00e9\u0301", "左" * 500]:
        status, reply, _ = call(server + "/api/generate", {"prompt": prompt, "run": "second-run", "seed": 1})
        assert status == 200 and len(reply["results"][0]["images"]) == 1, (prompt, reply)


@pytest.mark.parametrize("path, method, status", [
    ("/../../etc/passwd", "GET", 404), ("/%2e%2e/%2e%2e/etc/passwd", "GET", 404), ("/page.html", "GET", 404),
    ("/clipgen/serve/app.py", "GET", 404), ("/api/generate", "GET", 405), ("/api/health", "POST", 405),
])  # fmt: skip
def test_only_the_page_and_the_api_are_served(server, path, method, status):
    got, reply, _ = call(server + path, b"{}" if method == "POST" else None, method=method)
    assert got == status and "error" in reply
    assert "<textarea" not in str(reply)


def test_the_page_is_served_with_a_strict_content_policy(server):
    import urllib.request

    with urllib.request.urlopen(server + "/") as reply:
        page = reply.read().decode("utf-8")
        assert "default-src 'none'" in reply.headers["Content-Security-Policy"]
    assert 'id="prompt"' in page and "api/generate" in page


def test_a_missing_run_is_a_clear_error(tmp_path, capsys):
    assert clipgen_main(["serve", str(tmp_path / "nope")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert clipgen_main(["serve", str(tmp_path)]) == 2
    assert "is a condition-transformer run directory" in capsys.readouterr().err
    assert clipgen_main(["serve", str(tmp_path), "--max-batch", "0"]) == 2


# --- the batcher alone -------------------------------------------------------------------------------


def test_a_full_queue_refuses_with_a_retry_time_and_the_queued_work_still_finishes():
    release = threading.Event()

    def slow(run, requests):
        release.wait(10)
        return [f"{run}:{r}" for r in requests]

    batcher = Batcher(slow, ["a"], max_rows=2, max_queue_rows=4, wait_s=0.0)
    try:
        first = batcher.submit([("a", "r0", 2)])
        time.sleep(0.2)  # taken by the sampler thread, which now waits
        queued = batcher.submit([("a", "r1", 2)]) + batcher.submit([("a", "r2", 2)])
        with pytest.raises(QueueFull) as refused:
            batcher.submit([("a", "r3", 1)])
        assert refused.value.retry_after_s >= 1 and "retry in about" in str(refused.value)
        # what could never be drawn or queued is refused outright, not put off
        with pytest.raises(ValueError, match="draws at most 2"):
            batcher.submit([("a", "big", 3)])
        with pytest.raises(ValueError, match="queues at most 4"):
            batcher.submit([("a", "x", 2), ("a", "y", 2), ("a", "z", 2)])
        release.set()
        assert [f.result(10)[0] for f in first + queued] == ["a:r0", "a:r1", "a:r2"]
    finally:
        release.set()
        batcher.close()


def test_setup_runs_on_the_inference_thread_and_its_failure_is_raised_at_start():
    threads = []
    batcher = Batcher(lambda run, requests: [threading.current_thread().name for _ in requests], ["a"], 1, 1,
                      setup=lambda: threads.append(threading.current_thread().name))  # fmt: skip
    try:
        batcher.wait_ready(10)
        assert batcher.ready and batcher.submit([("a", "r", 1)])[0].result(10)[0] == threads[0] == "clipgen-sampler"
    finally:
        batcher.close()

    def broken():
        raise FileNotFoundError("run/model: no model.safetensors")

    failing = Batcher(lambda run, requests: [], ["a"], 1, 1, setup=broken)
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        failing.wait_ready(10)
    assert not failing.ready


def test_an_error_outside_the_draw_still_answers_every_request_and_the_thread_lives_on():
    calls = []

    def short(run, requests):  # returns one result too few: zip(strict=True) raises
        calls.append(len(requests))
        return [] if len(calls) == 1 else ["ok"] * len(requests)

    batcher = Batcher(short, ["a"], max_rows=4, max_queue_rows=4, wait_s=0.0)
    try:
        with pytest.raises(ValueError):
            batcher.submit([("a", "first", 1)])[0].result(10)
        assert batcher.submit([("a", "second", 1)])[0].result(10)[0] == "ok" and batcher.ready
    finally:
        batcher.close()


def test_a_request_that_fails_fails_alone():
    def picky(run, requests):
        if "bad" in requests:
            raise ValueError("this run cannot read 'bad'")
        return [r.upper() for r in requests]

    batcher = Batcher(picky, ["a"], max_rows=8, max_queue_rows=8, wait_s=0.2)
    try:
        futures = batcher.submit([("a", "one", 1)]) + batcher.submit([("a", "bad", 1)]) + batcher.submit([("a", "two", 1)])
        assert futures[0].result(10)[0] == "ONE" and futures[2].result(10)[0] == "TWO"
        with pytest.raises(ValueError, match="cannot read 'bad'"):
            futures[1].result(10)
    finally:
        batcher.close()


def test_random_bodies_never_get_a_server_error(server):
    """Every field with values of every JSON type, in random combinations: each answer is 200 or a
    400 that says why, never a 500, and the server stays healthy."""
    import random

    rng = random.Random(0)
    values = [None, True, 0, -1, 1, 3, 2**64, 0.5, 1e308, -1e-308, "", "红", "\ud83d", [], [1], {}, {"a": 1}]
    fields = ["prompt", "run", "num_images", "seed", "guidance_scale", "top_k", "top_p", "temperature", "candidates", "x"]
    statuses = []
    for _ in range(60):
        body = {name: rng.choice(values) for name in rng.sample(fields, rng.randint(1, 5))}
        body.setdefault("prompt", rng.choice(["红色圆形", PROMPT, "😀"]))
        status, reply, _ = call(server + "/api/generate", body)
        assert status in (200, 400) and (status == 200 or reply["error"]), (body, status, reply)
        statuses.append(status)
    assert statuses.count(200) >= 3 and statuses.count(400) >= 30
    assert call(server + "/api/health")[0] == 200


def test_a_full_queue_is_a_503_with_retry_after_and_every_other_request_is_answered(runs):
    root, run_dirs = runs
    with serving(run_dirs[:1], "--max-batch", "1", "--max-queue", "1") as url:
        body = {"prompt": PROMPT, "num_images": 1, "seed": 2}
        with ThreadPoolExecutor(12) as pool:
            replies = list(pool.map(lambda _: call(url + "/api/generate", body), range(12)))
    statuses = [status for status, _, _ in replies]
    assert set(statuses) == {200, 503}, statuses
    for status, reply, headers in replies:
        if status == 503:
            assert int(headers["Retry-After"]) >= 1 and "retry in about" in reply["error"]
        else:
            assert len(reply["results"][0]["images"]) == 1
