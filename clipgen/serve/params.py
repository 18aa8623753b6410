"""What a client may send to `POST /api/generate`, checked before anything is queued.

Every field is typed and bounded here, so the pipeline only ever sees values it can sample with;
an error is a `BadRequest` whose message the page shows as it is.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields

from clipgen.sampling import MAX_SEED, MAX_TEMPERATURE, SamplingSettings

MAX_PROMPT_CHARS = 500
MAX_IMAGES = 16
MAX_CANDIDATES = 64
MAX_BODY_BYTES = 64 * 1024


class BadRequest(ValueError):
    """A request the server refuses with 400 and this message."""


def limits(max_rows: int) -> dict[str, int]:
    """What one request may ask of one run, with the server drawing at most `max_rows` at once."""
    return {"max_images": min(MAX_IMAGES, max_rows), "max_candidates": min(MAX_CANDIDATES, max_rows),
            "max_prompt_chars": MAX_PROMPT_CHARS}  # fmt: skip


def _shown(value) -> str:
    """A client's value in a message, ASCII-escaped (a lone surrogate cannot be sent back as UTF-8)."""
    return json.dumps(value)[:60]


@dataclass(frozen=True)
class GenerateParams:
    prompt: str
    run: str | None = None  # None: every run
    num_images: int = 1
    seed: int | None = None  # None: the server draws one and says which
    guidance_scale: float | None = None  # None: the run's own setting (its sampling.yaml)
    top_k: int | None = None
    top_p: float | None = None
    temperature: float | None = None
    candidates: int | None = None

    def settings(self) -> dict:
        """The sampling settings the client chose (None: the run's own)."""
        return {f.name: getattr(self, f.name) for f in fields(SamplingSettings)}


def _reject_constant(name: str):
    raise BadRequest(f"the body holds {name}, which is not a number JSON allows")


def _integer(body: dict, name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{name} must be an integer, got {_shown(value)}")
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, got {value}")
    return value


def _number(body: dict, name: str, low: float, high: float, low_open: bool = False) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest(f"{name} must be a number, got {_shown(value)}")
    if not (low < value if low_open else low <= value) or value > high:
        raise BadRequest(f"{name} must be in {'(' if low_open else '['}{low:g}, {high:g}], got {value:g}")
    return float(value)


def parse_generate(raw: bytes, run_names: list[str], max_rows: int) -> GenerateParams:
    """The checked parameters of one generate request; `max_rows` bounds the images one run
    draws for it (num_images, or candidates when re-ranking)."""
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(f"the request body is over {MAX_BODY_BYTES // 1024} KiB")
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise BadRequest("the request body is not UTF-8") from None
    except json.JSONDecodeError as err:
        raise BadRequest(f"the request body is not JSON: {err.msg} at character {err.pos}") from None
    except RecursionError:
        raise BadRequest("the request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest('the request body must be a JSON object, e.g. {"prompt": "红色圆形"}')
    known = {f.name for f in fields(GenerateParams)}
    unknown = sorted(set(body) - known)
    if unknown:
        raise BadRequest(f"unknown field {_shown(', '.join(unknown))}; the fields are {', '.join(sorted(known))}")

    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise BadRequest("prompt must be a string" if prompt is not None else "prompt is missing")
    if not prompt.strip():
        raise BadRequest("the prompt is empty")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("the prompt holds a lone surrogate (\\ud800–\\udfff), which is not a character") from None
    if len(prompt) > MAX_PROMPT_CHARS:
        raise BadRequest(f"the prompt is {len(prompt)} characters long; at most {MAX_PROMPT_CHARS}")
    run = body.get("run")
    if run is not None and (not isinstance(run, str) or run not in run_names):
        raise BadRequest(f"unknown run {_shown(run)}; the runs are {', '.join(run_names)}")

    bounds = limits(max_rows)
    params = GenerateParams(
        prompt=prompt,
        run=run,
        num_images=_integer(body, "num_images", 1, bounds["max_images"]) or 1,
        seed=_integer(body, "seed", 0, MAX_SEED),
        guidance_scale=_number(body, "guidance_scale", 0, 100),
        top_k=_integer(body, "top_k", 0, 1_000_000),
        top_p=_number(body, "top_p", 0, 1, low_open=True),
        temperature=_number(body, "temperature", 0, MAX_TEMPERATURE),
        candidates=_integer(body, "candidates", 0, bounds["max_candidates"]),
    )  # candidates against num_images: ClipGenPipeline.request checks that, for every caller
    return params
