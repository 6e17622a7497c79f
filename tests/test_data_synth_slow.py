"""Full-size checks with the real detectors the curation cascade uses (slow: 128-px frames, dlib HOG + ResNet)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from avatarv.data.distractors import KINDS
from avatarv.data.synthesize import CorpusSpec, plan, synthesize_corpus
from avatarv.media import read_video


def test_plan_cycles_through_every_distractor_kind():
    spec = CorpusSpec(identities=24, scenes=3, clips_per_scene=2, seconds=4.0, size=128, seed=1234)
    jobs = plan(spec)
    d = [j for j in jobs if j.distractor]
    assert len(jobs) - len(d) == 144 and len(d) == round(0.2 * 144)
    assert {j.distractor for j in d} == set(KINDS)
    assert all(j.other != j.identity for j in d) and len({j.clip_id for j in jobs}) == len(jobs)


@pytest.mark.slow
def test_real_detectors_see_exactly_the_faces_the_ground_truth_says(tmp_path):
    from avatarv.faces import Box, detect_faces, embed_faces

    spec = CorpusSpec(identities=4, scenes=1, clips_per_scene=1, seconds=1.2, size=128, seed=3,
                      distractor_fraction=len(KINDS) / 4, holdout_identities=1)
    synthesize_corpus(tmp_path, spec, workers=2, progress=False)
    m = pd.read_parquet(tmp_path / "manifest.parquet")
    frames = {r.clip_id: read_video(tmp_path / r.path).frames for _, r in m.iterrows() if r.distractor != "truncated"}
    for _, r in m[m.distractor == ""].iterrows():
        for t in (0, r.n_frames // 2, r.n_frames - 1):
            f = frames[r.clip_id][t]
            d = detect_faces(f, "dlib")
            assert len(d) == 1 and d[0].side >= 75, (r.clip_id, t, d)
            assert len(detect_faces(f, "mediapipe")) == 1, (r.clip_id, t)
            gt = Box(*r.face_box[t])
            assert gt.iou(d[0]) > 0.5, (r.clip_id, t)
    two = m[m.distractor == "two_faces"].iloc[0]
    assert len(detect_faces(frames[two.clip_id][two.n_frames // 2], "dlib")) == 2

    def emb(row):
        t = row.n_frames // 2
        return embed_faces([frames[row.clip_id][t]], [Box(*row.face_box[t])], backend="dlib")[0]

    wrong = m[m.distractor == "wrong_identity"].iloc[0]
    true = json.loads(wrong["flags"])["true_identity"]
    clean = m[m.distractor == ""].set_index("identity")
    e = emb(wrong)
    assert float(e @ emb(clean.loc[true])) > float(e @ emb(clean.loc[wrong.identity]))
