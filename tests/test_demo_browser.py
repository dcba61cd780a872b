"""The chat demo in a real browser: headless Chromium (Debian's) driven by Playwright.

Opens the page, attaches a clip, asks a question, and waits for the model's answer to
appear in the chat and the clip in "what the model heard"; saves a screenshot. Every request
the page makes is recorded, and none may leave 127.0.0.1 (fonts, scripts and analytics are
all served locally or not at all).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
from demo_support import ModelSpy, tiny_demo_model, write_clips
from playwright.sync_api import sync_playwright

from mullm.demo import DemoConfig, ToneMusic, build_demo

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         # Name lookups of anything but 127.0.0.1 fail: a stray request cannot leave.
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


def leaves_the_machine(url: str) -> bool:
    """True for a network request to anywhere but 127.0.0.1 (blob: and data: are in-page)."""
    parts = urlparse(url)
    return parts.scheme not in ("blob", "data") and parts.hostname != "127.0.0.1"


def letters(text: str) -> str:
    """Letters and digits only: what survives Markdown rendering of an arbitrary reply."""
    return re.sub(r"[^A-Za-z0-9]", "", text)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("browser")
    model = tiny_demo_model(root)
    spy = ModelSpy(model)
    app = build_demo(model, DemoConfig(max_new_tokens=16), music=ToneMusic(trigger="play"),
                     model_name="tiny-test", workdir=root / "work")
    url = app.launch(port=None, block=False, quiet=True)
    yield {"url": url, "model": model, "spy": spy, "clips": write_clips(root / "clips")}
    app.close()


def test_ask_about_a_clip_in_the_browser(served, tmp_path):
    clip = served["clips"]["c_major"]
    expected = served["model"].chat("<audio>\nWhat key is this in?", audio=str(clip),
                                    max_new_tokens=16)
    assert letters(expected), "the tiny model's answer has no letters to look for"
    outside: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 860})
        try:
            page = browser.new_page()
            # Recorded, not intercepted: routing would buffer gradio's event stream.
            page.on("request", lambda r: outside.append(r.url)
                    if leaves_the_machine(r.url) else None)
            page.goto(served["url"])
            box = page.locator("#message textarea")
            box.wait_for(timeout=30_000)
            page.locator("#message input[type=file]").set_input_files(str(clip))
            page.locator("#message .has-files").wait_for(timeout=30_000)  # uploaded
            box.fill("What key is this in?")
            box.press("Enter")
            bot = page.locator('#chat [data-testid="bot"]').last
            page.wait_for_function(
                "([want]) => { const b = document.querySelectorAll('#chat [data-testid=bot]');"
                " return b.length && b[b.length - 1].innerText.replace(/[^A-Za-z0-9]/g, '')"
                " .includes(want); }", arg=[letters(expected)], timeout=60_000)
            page.locator("#heard").get_by_text("Clip 1: c_major.wav").wait_for(timeout=30_000)
            user = page.locator('#chat [data-testid="user"]').first
            assert "What key is this in?" in user.inner_text()
            assert letters(bot.inner_text()) == letters(expected)
            page.locator("#spectrograms img").wait_for(timeout=30_000)
            shot = page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
        finally:
            browser.close()
    assert shot[:4] == b"\x89PNG" and len(shot) > 20_000
    conversation, media = served["spy"].last_chat()
    assert conversation == [{"role": "user", "content": "<audio>\nWhat key is this in?"}]
    assert len(media["audio"]) == 1
    assert outside == [], outside
    print(f"screenshot: {Path(tmp_path / 'demo.png')}")
