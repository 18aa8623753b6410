"""Draw docs/serve.png: the `clipgen serve` page answering one Chinese prompt with every run of a
finished demo side by side, in the system's headless Chromium.

    python docs/serve_screenshot.py runs/demo/*/ --out docs/serve.png     # needs a CJK font (fonts-noto-cjk)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clipgen.serve.client import CHROMIUM_ARGS, call, find_chromium, serving  # noqa: E402

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--out", default="docs/serve.png")
    parser.add_argument("--prompt", default="左上有一个大的红色圆形")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--num-images", type=int, default=4)
    parser.add_argument("--top-k", type=int, default=4, help="the demo's runs are greedy (top-k 1); 4 shows variety, as its grid does")
    args = parser.parse_args()
    chromium = find_chromium()
    if chromium is None:
        sys.exit("no Chromium found: apt-get install chromium")
    from playwright.sync_api import expect, sync_playwright

    with serving(args.runs) as url, sync_playwright() as p:
        runs = call(url + "/api/runs")[1]["runs"]
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1480, "height": 900}, device_scale_factor=1)
        page.goto(url + "/")
        page.fill("#prompt", args.prompt)
        page.fill("#num_images", str(args.num_images))
        page.fill("#seed", str(args.seed))
        page.fill("#top_k", str(args.top_k))
        page.click("#generate")
        for run in runs:
            expect(page.locator(f".run[data-run={json.dumps(run)}] img.result-image")).to_have_count(args.num_images, timeout=120000)
        page.screenshot(path=args.out, full_page=True)
        browser.close()
    print(f"wrote {args.out} ({len(runs)} runs: {', '.join(runs)})")


if __name__ == "__main__":
    main()
