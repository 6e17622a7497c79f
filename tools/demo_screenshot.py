"""Screenshots of the demo app (reports/demo/demo_progress.png, reports/demo/demo.png) over a trained checkpoint:
serves the app on 127.0.0.1, uploads a 3 s real-footage-like clip and its speech through the page in headless
Chromium, and prints how long the job took and its self-check line.

    python tools/demo_screenshot.py [--checkpoint runs/sft/final] [--port 8799]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--port", type=int, default=8799)
    args = ap.parse_args()

    import uvicorn
    from playwright.sync_api import sync_playwright

    from avatarv.demo.app import create_app
    from avatarv.eval.real_footage import footage_clip
    from avatarv.inference.cli import resolve_checkpoint
    from avatarv.media import write_video, write_wav
    from avatarv.paths import REPORTS

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _footage_fixtures import identities

    tmp = Path(tempfile.mkdtemp(prefix="avatarv-demo-"))
    clip = footage_clip(identities()[21], seconds=3.0, face_fraction=0.22, seed=4)
    write_video(tmp / "presenter.mp4", clip.frames, clip.fps)
    write_wav(tmp / "speech.wav", clip.audio, clip.sample_rate)
    app = create_app(resolve_checkpoint(args.checkpoint), tmp / "work", seed=0)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.1)
    out = REPORTS / "demo"
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_context(viewport={"width": 900, "height": 760}).new_page()
        page.goto(f"http://127.0.0.1:{args.port}/")
        page.set_input_files("#reference", str(tmp / "presenter.mp4"))
        page.set_input_files("#speech", str(tmp / "speech.wav"))
        page.fill("#consent-who", "Synthetic Presenter")
        page.check("#consent")
        page.click("#generate")
        page.wait_for_url("**/jobs/*", timeout=120_000)
        t0, shot = time.monotonic(), False
        while page.locator("#result").count() == 0:
            if page.locator("#error").count():
                print(page.locator("#error").inner_text())
                return 1
            bar = page.locator("#progress")
            if not shot and bar.count() and float(bar.get_attribute("value") or 0) > 0.3:
                page.screenshot(path=str(out / "demo_progress.png"))
                shot = True
            time.sleep(0.2)
        seconds = time.monotonic() - t0
        page.wait_for_function("() => document.getElementById('result').readyState >= 2")
        page.evaluate("() => { document.getElementById('result').currentTime = 1.5; }")
        page.wait_for_timeout(1500)
        page.mouse.move(0, 0)
        page.screenshot(path=str(out / "demo.png"), full_page=True)
        print(f"job page to result: {seconds:.1f} s; {page.locator('#summary').inner_text()}")
        print(page.locator("#self-check").inner_text())
        browser.close()
    server.should_exit = True
    return 0


if __name__ == "__main__":
    sys.exit(main())
