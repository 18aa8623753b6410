"""`clipgen serve`: a page to try prompts on one run or several side by side, and a JSON API.

- `params.py` checks what a client sends (every field typed and bounded, unknown keys refused);
- `batcher.py` gathers requests that arrive together into one sampler call per run, on one
  inference thread;
- `app.py` is the Starlette app: the page, `/api/health`, `/api/runs`, `/api/generate`;
- `runs.py` finds the run directories among the paths given and loads their pipelines;
- `page.html` is the page itself (plain HTML, CSS and JavaScript: nothing to build).

Starlette and uvicorn rather than Gradio: 5 MB and 0.12 s to import against 341 MB (54
packages) and 2.5 s (BENCHMARKS.md, "serve"), and a page this small needs none of Gradio's
components.
"""
