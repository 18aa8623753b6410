"""The page of `clipgen serve`, driven in a real headless Chromium (the system's package) by
Playwright: type a Chinese prompt, press Generate, see every run's images appear.

With no Chromium found the test is skipped and says how to install one; CI installs it
(`.ci/run`) and sets CLIPGEN_REQUIRE_BROWSER=1, so there a missing browser fails instead."""

import base64
import os
import shutil

import pytest

from clipgen.cli import main as clipgen_main
from clipgen.sampling import SamplingSettings, write_run_sampling
from gpt_helpers import gpt_args, make_stages
from clipgen.serve.client import CHROMIUM_ARGS, call, find_chromium, serving

INSTALL_HINT = "no Chromium found: install the system's (Debian/Ubuntu: apt-get install chromium) or set CLIPGEN_CHROMIUM"


@pytest.fixture(scope="module")
def browser():
    path = find_chromium()
    if path is None:
        if os.environ.get("CLIPGEN_REQUIRE_BROWSER") == "1":
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    playwright = pytest.importorskip("playwright.sync_api", reason='Playwright is in the dev extra: pip install -e ".[dev]"')
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = make_stages(tmp_path_factory.mktemp("page_stages"))
    first, second = root / "language-free", root / "greedy"
    assert clipgen_main(gpt_args(root, first, 2)) == 0
    shutil.copytree(first, second)
    write_run_sampling(second, SamplingSettings(guidance_scale=1.5, temperature=0.0))
    with serving([first, second]) as url:
        yield url


def test_typing_a_chinese_prompt_and_pressing_generate_shows_every_runs_images(browser, server, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page()
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(server + "/")
    page.wait_for_selector("#run option[value='greedy']", state="attached")
    page.fill("#prompt", "左上有一个大的红色圆形")
    page.fill("#num_images", "3")
    page.fill("#seed", "21")
    page.click("#generate")
    for run in ("language-free", "greedy"):  # (expect, not wait_for_function: the page's policy allows no eval)
        expect(page.locator(f".run[data-run='{run}'] img.result-image")).to_have_count(3, timeout=60000)
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    # the page shows what the API gives for the same request, and says how long each run took
    _, reply, _ = call(server + "/api/generate", {"prompt": "左上有一个大的红色圆形", "num_images": 3, "seed": 21})
    for result in reply["results"]:
        card = page.locator(f".run[data-run='{result['run']}']")
        shown = [src.removeprefix("data:image/png;base64,") for src in card.locator("img").evaluate_all("els => els.map(e => e.src)")]
        assert shown == result["images"]
        assert "seed 21" in card.locator(".status").inner_text() and " s" in card.locator(".status").inner_text()
        assert card.locator("a").first.get_attribute("download") == f"{result['run']}_seed21_0.png"
    assert base64.b64decode(shown[0])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not errors, errors


def test_a_bad_setting_shows_the_servers_message(browser, server):
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(server + "/")
    page.wait_for_selector("#run option[value='greedy']", state="attached")
    page.select_option("#run", "greedy")
    assert page.get_attribute("#temperature", "placeholder") == "0"  # the run's own setting (0.0)
    page.fill("#prompt", "红色圆形")
    page.fill("#top_p", "0")  # the browser lets it through (min is 0); the server refuses it
    page.click("#generate")
    expect(page.locator("#error")).to_contain_text("top_p must be in (0, 1]", timeout=30000)
    assert page.locator(".run[data-run='greedy'] .status.failed").count() == 1
    # an empty prompt never leaves the page
    page.fill("#prompt", "   ")
    page.click("#generate")
    expect(page.locator("#error")).to_have_text("the prompt is empty", timeout=10000)
