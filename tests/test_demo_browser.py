"""The demo app in headless Debian Chromium (Playwright) against uvicorn on 127.0.0.1: bad uploads are refused on
the page, one line each naming the file and the problem, then a real upload through the page's file inputs runs a job (tiny untrained
pipeline, one step) whose progress page turns into the result: a video element the browser actually decodes at the
reference's size, the self-check line and a download link that serves the same mp4. Saves reports/demo/demo.png
(with AVATARV_UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _demo_fixtures import demo_media, saved_tiny_pipeline
from _served import served

from avatarv.paths import REPORTS

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,  # ~60 s on a busy 2-core box: the footage identities, a generation, Chromium
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium missing (the Makefile installs it)"),
]


@pytest.fixture
def served_demo(tmp_path):
    from avatarv.demo.app import create_app

    app = create_app(saved_tiny_pipeline(tmp_path / "ckpt"), tmp_path / "work", steps=1, max_upload_bytes=2**20)
    with served(app) as url:
        yield url, demo_media(tmp_path / "media"), tmp_path / "work"


def test_upload_generate_watch_download_in_chromium(served_demo, tmp_path):
    from playwright.sync_api import sync_playwright

    url, media, work = served_demo
    out = REPORTS / "demo" if os.environ.get("AVATARV_UPDATE_SCREENSHOTS") else tmp_path / "shots"
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 900, "height": 900}, accept_downloads=True).new_page()
        page.goto(url)
        page.fill("#consent-who", "Ada Example")
        page.check("#consent")
        # both inputs bad: one line each, naming each file and its problem; the page stays put
        page.set_input_files("#reference", str(media / "wall.png"))
        page.set_input_files("#speech", str(media / "silence.wav"))
        page.click("#generate")
        page.wait_for_selector("#errors p.err >> nth=1")
        lines = page.locator("#errors p.err").all_inner_texts()
        assert lines == ["wall.png: no face found in the reference", "silence.wav: audio is silent (peak amplitude 0.0e+00)"]
        assert page.url.rstrip("/") == url
        # too large (refused by the page before sending) and not audio (refused by the server); earlier lines cleared
        (tmp_path / "big.mp4").write_bytes(bytes(2 * 2**20))
        page.set_input_files("#reference", str(tmp_path / "big.mp4"))
        page.set_input_files("#speech", str(media / "notes.txt"))
        page.click("#generate")
        page.wait_for_function("() => document.querySelectorAll('#errors p.err').length === 2"
                               " && document.querySelector('#errors p.err').textContent.startsWith('big.mp4')")
        lines = page.locator("#errors p.err").all_inner_texts()
        assert lines[0] == "big.mp4: file too large (2.0 MB; the limit is 1.0 MB)"
        assert lines[1].startswith("notes.txt: not an audio or video file (.txt; accepted: ")

        page.set_input_files("#reference", str(media / "person.mp4"))
        page.set_input_files("#speech", str(media / "speech.wav"))
        page.click("#generate")
        page.wait_for_url(f"{url}/jobs/*", timeout=60_000)
        job_id = page.url.rsplit("/", 1)[1]
        page.wait_for_selector("#result", timeout=180_000)  # the progress page reloads into the result
        assert page.locator("#errors").count() == 0
        page.wait_for_function("() => { const v = document.getElementById('result');"
                               " return v.readyState >= 2 && !v.error && v.videoWidth === 640 && v.videoHeight === 360; }",
                               timeout=20_000)
        duration = page.evaluate("() => document.getElementById('result').duration")
        assert abs(duration - 0.8) < 0.1
        assert page.locator("#self-check").inner_text().startswith("self-check: face in ")
        with page.expect_download() as dl:
            page.click("#download")
        download = dl.value
        assert download.suggested_filename == f"avatarv-{job_id}.mp4"
        saved = tmp_path / "downloaded.mp4"
        download.save_as(saved)
        assert saved.read_bytes() == (work / "jobs" / job_id / f"avatarv-{job_id}.mp4").read_bytes()
        page.mouse.move(0, 0)
        page.screenshot(path=str(out / "demo.png"), full_page=True)
        browser.close()
