"""A full annotation session in headless Debian Chromium (Playwright) against the app served by uvicorn on
127.0.0.1: every annotator answers every case by clicking, videos must actually decode in the page, a replayed
form (the same case answered again from a second tab) is refused, and the results page shows the clicked answers. Saves the
screenshots reports/study/annotation.png and reports/study/results.png (with AVATARV_UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from _served import served

from avatarv.paths import REPORTS
from avatarv.study.db import DIMENSIONS, open_db
from avatarv.study.fixtures import make_demo_manifest
from avatarv.study.manifest import create_study, read_manifest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium missing (the Makefile installs it)"),
]


@pytest.fixture
def served_study(tmp_path):
    from avatarv.study.app import create_app

    media = tmp_path / "media"
    db = tmp_path / "study.db"
    with open_db(db)() as s:
        st = create_study(s, read_manifest(make_demo_manifest(media)), media, 6, seed=3)
        info = {"db": db, "owner": st.owner_token, "annotators": {
            a.token: {c.case.uid: (c.case.kind, c.case.real_side) for c in a.assignments} for a in st.annotators
        }, "first": next(a.token for a in sorted(st.annotators, key=lambda a: a.name))}
    with served(create_app(db, n_boot=200), stop_timeout=10) as url:
        info["url"] = url
        yield info


def _n_answers(db) -> int:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT COUNT(*) FROM answers").fetchone()[0]


def test_full_annotation_session_in_chromium(served_study, tmp_path):
    from playwright.sync_api import sync_playwright

    # the committed screenshots are refreshed only on request, so `make test` leaves the working tree clean
    out = REPORTS / "study" if os.environ.get("AVATARV_UPDATE_SCREENSHOTS") else tmp_path / "study"
    out.mkdir(parents=True, exist_ok=True)
    url, db = served_study["url"], served_study["db"]
    shot_taken = False
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1000, "height": 760})
        page = context.new_page()
        for n, (token, cases) in enumerate(sorted(served_study["annotators"].items())):
            fooled = n == 0  # the first annotator always picks the generated video, the others the real one
            page.goto(f"{url}/a/{token}")
            for _ in cases:
                uid = page.locator("input[name=case]").get_attribute("value")
                kind, real_side = cases[uid]
                videos = page.locator("video")
                assert videos.count() == (1 if kind == "likert" else 2)
                # The browser must really decode the H.264 clips: a frame is available and no media error.
                page.wait_for_function(
                    "() => [...document.querySelectorAll('video')].every(v => v.readyState >= 2 && !v.error"
                    " && v.videoWidth === 64)", timeout=20_000)
                if not shot_taken:  # the clip really plays inline: time advances after play()
                    played = page.evaluate(
                        "async () => { const v = document.querySelector('video'); v.muted = true; await v.play();"
                        " await new Promise(r => v.addEventListener('timeupdate', r, {once: true}));"
                        " v.pause(); v.currentTime = 0; return v.currentTime + v.played.end(0); }")
                    assert played > 0
                if kind == "turing" and not shot_taken:
                    page.evaluate("() => document.querySelectorAll('video').forEach(v => { v.currentTime = 0.5; })")
                    page.wait_for_function("() => [...document.querySelectorAll('video')].every(v => !v.seeking"
                                           " && v.readyState === 4)")
                    page.mouse.move(0, 0)
                    page.wait_for_timeout(1500)  # let the loading spinner and hover controls fade before the shot
                    page.screenshot(path=str(out / "annotation.png"), full_page=True)
                    shot_taken = True
                if kind == "turing":
                    side = ({"left": "right", "right": "left"}[real_side]) if fooled else real_side
                    page.check(f"input[name=choice][value={side}]")
                elif kind == "pairwise":
                    page.check("input[name=choice][value=left]")
                else:
                    for i, d in enumerate(DIMENSIONS):
                        page.check(f"input[name={d}][value='{1 + (i + n) % 5}']")
                before = _n_answers(db)
                stale = None
                if n == 0 and before == 0:  # the same case open in a second tab: a double vote waiting to happen
                    stale = context.new_page()
                    stale.goto(page.url)
                    stale.locator("input[type=radio]").first.check()
                    stale.evaluate("() => document.querySelectorAll('input[type=radio]').forEach(r => r.required = false)")
                page.click("#submit")
                page.wait_for_load_state()
                assert _n_answers(db) == before + 1
                if stale is not None:  # submitting the stale copy of the answered form is refused, nothing stored
                    stale.click("#submit")
                    stale.wait_for_load_state()
                    assert "already answered" in stale.locator("#error").inner_text()
                    assert _n_answers(db) == 1
                    stale.close()
            assert "All 3 of your cases are answered" in page.locator("#done").inner_text()
        assert shot_taken
        page.goto(f"{url}/a/not-a-real-token")
        assert "unknown invite token" in page.locator("#error").inner_text()

        page.goto(f"{url}/results/{served_study['owner']}")
        text = page.locator("body").inner_text()
        assert "18 answers of 18 expected" in text and "SIMULATED" not in text
        turing = page.locator("#turing").inner_text()
        # annotator 1 of the 6 is always fooled; each Turing case has 3 annotators: the rate is the share of the
        # 2 cases that annotator judged, the same number the analysis module computes from the database.
        with sqlite3.connect(db) as c:
            fooled_cases = c.execute(
                "SELECT COUNT(DISTINCT cases.id) FROM answers JOIN assignments ON answers.assignment_id = assignments.id"
                " JOIN cases ON assignments.case_id = cases.id WHERE cases.kind = 'turing'"
                " AND answers.choice != cases.real_side").fetchone()[0]
        assert f"{100 * fooled_cases / 2:.1f} %" in turing
        page.screenshot(path=str(out / "results.png"), full_page=True)
        browser.close()
    assert _n_answers(db) == 18
