"""The study app through HTTP (FastAPI TestClient): a full annotation flow, every refused input stores nothing,
and all state survives a restart (a new app and engine on the same SQLite file)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError

from avatarv.errors import InputError
from avatarv.study.app import create_app
from avatarv.study.db import DIMENSIONS, open_db
from avatarv.study.fixtures import make_demo_manifest
from avatarv.study.manifest import balanced_assignment, create_study, read_manifest

LIKERT_OK = dict.fromkeys(DIMENSIONS, "4")


@pytest.fixture(scope="module")
def demo_media(tmp_path_factory):
    """The demo clips, encoded once per module; each test gets its own copy (some tests tamper with it)."""
    media = tmp_path_factory.mktemp("demo") / "media"
    make_demo_manifest(media)
    return media


@pytest.fixture
def study(tmp_path, demo_media):
    media = tmp_path / "media"
    shutil.copytree(demo_media, media)
    manifest = media / "manifest.json"
    db = tmp_path / "study.db"
    with open_db(db)() as s:
        st = create_study(s, read_manifest(manifest), media, 6, seed=3, annotators_per_case=3)
        info = {
            "db": db, "media": media, "owner": st.owner_token,
            "tokens": [a.token for a in sorted(st.annotators, key=lambda a: a.name)],
            # token → [(case uid, kind, real_side)] in queue order
            "queues": {a.token: [(x.case.uid, x.case.kind, x.case.real_side) for x in a.assignments] for a in st.annotators},
        }
    return info


def _client(study) -> TestClient:
    return TestClient(create_app(study["db"], n_boot=50))


def _n_answers(db) -> int:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT COUNT(*) FROM answers").fetchone()[0]


def _answer_for(kind: str, real_side: str | None) -> dict:
    if kind == "likert":
        return dict(LIKERT_OK)
    return {"choice": real_side if kind == "turing" else "left"}


def _uid_on_page(html: str) -> str:
    return re.search(r'name="case" value="([0-9a-f]+)"', html).group(1)


def _case_not_assigned_to(study, token) -> str:
    mine = {u for u, _, _ in study["queues"][token]}
    return next(u for t, q in study["queues"].items() for u, _, _ in q if u not in mine)


def test_assignment_is_balanced_three_distinct_annotators_per_case():
    queues = balanced_assignment(n_cases=10, n_annotators=7, per_case=3, seed=0)
    loads = [len(q) for q in queues]
    assert sum(loads) == 30 and max(loads) - min(loads) <= 1
    for case in range(10):
        assert sum(case in q for q in queues) == 3
    assert all(len(set(q)) == len(q) for q in queues)
    with pytest.raises(InputError):
        balanced_assignment(n_cases=2, n_annotators=2, per_case=3, seed=0)


def test_full_annotation_flow_and_results(study):
    c = _client(study)
    for token in study["tokens"]:
        for uid, kind, real_side in study["queues"][token]:
            page = c.get(f"/a/{token}")
            assert page.status_code == 200 and _uid_on_page(page.text) == uid  # queue order is served
            videos = re.findall(r'<video[^>]*src="([^"]+)"', page.text)
            assert len(videos) == (1 if kind == "likert" else 2)
            for v in videos:
                r = c.get(v)
                assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
                assert r.content[4:8] == b"ftyp"
                assert not re.search(r"real|gen_|clips|\.mp4", v)  # URLs reveal nothing about the source
            r = c.post(f"/a/{token}/answer", data={"case": uid, **_answer_for(kind, real_side)}, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"] == f"/a/{token}"
        assert "Thank you" in c.get(f"/a/{token}").text
    assert _n_answers(study["db"]) == 18  # 6 cases × 3 annotators
    with sqlite3.connect(study["db"]) as db:  # every case page view was timed (seconds per answer)
        assert db.execute("SELECT COUNT(*) FROM assignments WHERE shown_at IS NOT NULL").fetchone()[0] == 18
    res = c.get(f"/results/{study['owner']}")
    assert res.status_code == 200 and "18 answers of 18 expected" in res.text and "SIMULATED" not in res.text
    turing_row = re.search(r'<table id="turing">.*?</table>', res.text, re.DOTALL).group(0)
    assert "0.0 %" in turing_row and "100.0 %" in turing_row  # all picked the real video: nobody fooled
    csv = c.get(f"/results/{study['owner']}/answers.csv")
    assert csv.status_code == 200 and len(csv.text.strip().splitlines()) == 19


def test_unknown_token_refused(study):
    c = _client(study)
    uid = study["queues"][study["tokens"][0]][0][0]
    assert c.get("/a/not-a-token").status_code == 404
    assert c.post("/a/not-a-token/answer", data={"case": uid, "choice": "left"}).status_code == 404
    assert c.get(f"/a/not-a-token/video/{uid}/left").status_code == 404
    assert c.get("/results/not-a-token").status_code == 404
    assert c.get(f"/results/{study['tokens'][0]}").status_code == 404  # an annotator token is not the owner's
    assert _n_answers(study["db"]) == 0


def test_case_not_assigned_and_tampered_case_ids_refused(study):
    c = _client(study)
    tok = study["tokens"][0]
    other = _case_not_assigned_to(study, tok)
    assert c.post(f"/a/{tok}/answer", data={"case": other, "choice": "left"}).status_code == 403
    assert c.post(f"/a/{tok}/answer", data={"case": "deadbeefdeadbeef", "choice": "left"}).status_code == 404
    assert c.post(f"/a/{tok}/answer", data={"case": "", "choice": "left"}).status_code == 400
    assert c.post(f"/a/{tok}/answer", data={"choice": "left"}).status_code == 400
    uid = study["queues"][tok][0][0]
    assert c.post(f"/a/{tok}/answer", content=f"case={uid}&case={other}&choice=left",
                  headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 400
    assert c.post(f"/a/{tok}/answer", json={"case": uid, "choice": "left"}).status_code == 415
    assert _n_answers(study["db"]) == 0


def test_replayed_vote_refused_first_vote_kept(study):
    c = _client(study)
    tok, uid, real_side = next((t, u, rs) for t, q in study["queues"].items() for u, k, rs in q if k == "turing")
    fake_side = "left" if real_side == "right" else "right"
    assert c.post(f"/a/{tok}/answer", data={"case": uid, "choice": real_side}, follow_redirects=False).status_code == 303
    assert c.post(f"/a/{tok}/answer", data={"case": uid, "choice": real_side}).status_code == 409
    assert c.post(f"/a/{tok}/answer", data={"case": uid, "choice": fake_side}).status_code == 409
    with sqlite3.connect(study["db"]) as db:
        assert db.execute("SELECT choice FROM answers").fetchall() == [(real_side,)]


@pytest.mark.parametrize("bad", [
    {"lip_sync": "0"}, {"lip_sync": "6"}, {"overall": "3.5"}, {"naturalness": ""}, {"identity": "x"},
    {"visual_quality": "-1"}, {"expressiveness": " 99"},
])
def test_out_of_range_likert_refused(study, bad):
    c = _client(study)
    tok, uid = next((t, u) for t, q in study["queues"].items() for u, k, _ in q if k == "likert")
    assert c.post(f"/a/{tok}/answer", data={"case": uid, **LIKERT_OK, **bad}).status_code == 422
    assert _n_answers(study["db"]) == 0


def test_malformed_answers_refused(study):
    c = _client(study)
    tok, uid = next((t, u) for t, q in study["queues"].items() for u, k, _ in q if k == "likert")
    missing = {k: v for k, v in LIKERT_OK.items() if k != "overall"}
    assert c.post(f"/a/{tok}/answer", data={"case": uid, **missing}).status_code == 422
    assert c.post(f"/a/{tok}/answer", data={"case": uid, **LIKERT_OK, "choice": "left"}).status_code == 422
    ttok, tuid = next((t, u) for t, q in study["queues"].items() for u, k, _ in q if k == "turing")
    for choice in ("middle", "tie", ""):  # a Turing pair has no tie
        assert c.post(f"/a/{ttok}/answer", data={"case": tuid, "choice": choice}).status_code == 422
    assert c.post(f"/a/{ttok}/answer", data={"case": tuid, **LIKERT_OK}).status_code == 422
    assert _n_answers(study["db"]) == 0


def test_videos_only_for_own_cases_and_only_from_media_root(study, tmp_path):
    c = _client(study)
    tok = study["tokens"][0]
    uid = study["queues"][tok][0][0]
    assert c.get(f"/a/{tok}/video/{_case_not_assigned_to(study, tok)}/left").status_code == 403
    assert c.get(f"/a/{tok}/video/{uid}/middle").status_code == 404
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"\x00\x00\x00\x18ftypSECRET")
    for url in (
        f"/a/{tok}/video/../../../secret.mp4", f"/a/{tok}/video/{uid}/..%2F..%2Fsecret.mp4",
        f"/a/{tok}/video/%2e%2e/%2e%2e/secret.mp4", f"/a/{tok}/video/{uid}/%2e%2e%2f%2e%2e%2fsecret.mp4",
        f"/a/{tok}/video/{uid}/left/../../../../secret.mp4", "/media/../secret.mp4", f"/a/{tok}/../../secret.mp4",
    ):
        r = c.get(url)
        assert 400 <= r.status_code < 500 and b"SECRET" not in r.content, url
    # A stored path tampered to leave the media root (directly in the database) is refused when served ...
    with sqlite3.connect(study["db"]) as db:
        db.execute("UPDATE cases SET left_media = '../secret.mp4' WHERE uid = ?", (uid,))
    r = c.get(f"/a/{tok}/video/{uid}/left")
    assert r.status_code == 403 and b"SECRET" not in r.content
    # ... and so is a symlink inside the media root that points outside it.
    os.symlink(secret, study["media"] / "link.mp4")
    with sqlite3.connect(study["db"]) as db:
        db.execute("UPDATE cases SET left_media = 'link.mp4' WHERE uid = ?", (uid,))
    r = c.get(f"/a/{tok}/video/{uid}/left")
    assert r.status_code == 403 and b"SECRET" not in r.content


@pytest.mark.parametrize("path", ["../outside.mp4", "/etc/passwd.mp4", "clips/../../x.mp4", "clips/notes.txt"])
def test_manifest_paths_escaping_the_media_root_refused(tmp_path, path):
    media = tmp_path / "media"
    make_demo_manifest(media)
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps([{"case_id": "c", "kind": "likert", "video_a": path, "system_a": "s"}]))
    with pytest.raises(InputError, match="media"):
        read_manifest(manifest)


def test_manifest_rows_checked(tmp_path):
    media = tmp_path / "media"
    make_demo_manifest(media)
    cases = json.loads((media / "manifest.json").read_text())
    for mutate, match in (
        (lambda cs: cs.append(dict(cs[0])), "duplicate case_id"),
        (lambda cs: cs[0].update(kind="vote"), "kind"),
        (lambda cs: cs[0].update(video_b=""), "needs video_b"),
        (lambda cs: cs[2].update(system_b="gen_x"), "two different systems"),
    ):
        bad = json.loads(json.dumps(cases))
        mutate(bad)
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(InputError, match=match):
            read_manifest(tmp_path / "bad.json")
    good = read_manifest(media / "manifest.json")
    missing = [c.__class__(**{**c.__dict__, "video_a": "clips/none.mp4"}) for c in good[:1]]
    with open_db(tmp_path / "s.db")() as s, pytest.raises(InputError, match="not found"):
        create_study(s, missing, media, 3, seed=0)
    with sqlite3.connect(tmp_path / "s.db") as db:
        assert db.execute("SELECT COUNT(*) FROM studies").fetchone()[0] == 0


def test_sides_randomised_by_seed(tmp_path):
    media = tmp_path / "media"
    base = read_manifest(make_demo_manifest(media))[0]
    cases = [base.__class__(**{**base.__dict__, "case_id": f"t{i}"}) for i in range(24)]

    def sides(seed, name):
        with open_db(tmp_path / f"{name}.db")() as s:
            st = create_study(s, cases, media, 3, seed=seed)
            return {c.key: c.real_side for c in st.cases}

    a, b, other = sides(5, "a"), sides(5, "b"), sides(6, "c")
    assert a == b and a != other
    assert {"left", "right"} == set(a.values())


def test_state_survives_restart(study):
    tok = study["tokens"][0]
    (uid0, kind0, rs0), (uid1, _, _) = study["queues"][tok][:2]
    c1 = _client(study)
    assert c1.post(f"/a/{tok}/answer", data={"case": uid0, **_answer_for(kind0, rs0)},
                   follow_redirects=False).status_code == 303
    del c1  # "restart": a fresh app with a fresh engine on the same file
    c2 = _client(study)
    assert _uid_on_page(c2.get(f"/a/{tok}").text) == uid1
    assert c2.post(f"/a/{tok}/answer", data={"case": uid0, **_answer_for(kind0, rs0)}).status_code == 409
    assert "1 answers of 18 expected" in c2.get(f"/results/{study['owner']}").text
    assert _n_answers(study["db"]) == 1


def test_racing_duplicate_votes_store_one(study):
    """Two requests that both saw the case open: the UNIQUE constraint keeps the first vote, the second is a 409."""
    from avatarv.study.answers import Refusal, annotator_for, assignment_for, record_answer

    tok, uid, real_side = next((t, u, rs) for t, q in study["queues"].items() for u, k, rs in q if k == "turing")
    Session = open_db(study["db"])
    s1, s2 = Session(), Session()
    seen = [assignment_for(s, annotator_for(s, tok), uid) for s in (s1, s2)]  # held: the sessions keep them
    assert all(a.answer is None for a in seen)  # both requests saw the case unanswered
    record_answer(s1, tok, {"case": [uid], "choice": [real_side]})
    with pytest.raises(Refusal) as refused:
        record_answer(s2, tok, {"case": [uid], "choice": ["left" if real_side == "right" else "right"]})
    assert refused.value.status == 409
    assert isinstance(refused.value.__context__, IntegrityError)  # refused by the database's UNIQUE constraint
    s1.close()
    s2.close()
    with sqlite3.connect(study["db"]) as db:
        assert db.execute("SELECT choice FROM answers").fetchall() == [(real_side,)]


@pytest.mark.parametrize("values", [{"lip_sync": 6}, {"overall": 0}, {"choice": "middle"}])
def test_database_constraints_back_up_the_validation(study, values):
    from avatarv.study.db import Answer, Assignment

    with open_db(study["db"])() as s:
        asg = s.query(Assignment).first()
        s.add(Answer(assignment=asg, **values))
        with pytest.raises(IntegrityError):
            s.commit()
    assert _n_answers(study["db"]) == 0


def test_older_database_gets_new_columns_added(study):
    """A study database from before a column was added still opens, keeping its data (additive migration)."""
    with sqlite3.connect(study["db"]) as db:
        db.execute("ALTER TABLE assignments DROP COLUMN shown_at")
    tok = study["tokens"][0]
    uid = study["queues"][tok][0][0]
    c = _client(study)
    assert _uid_on_page(c.get(f"/a/{tok}").text) == uid
    with sqlite3.connect(study["db"]) as db:
        assert db.execute("SELECT COUNT(*) FROM assignments WHERE shown_at IS NOT NULL").fetchone()[0] == 1
