"""Identity graph, pairs and scoring on synthetic embeddings/tables with known answers (no media, fast)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from avatarv.config import load_config
from avatarv.curate.identity_graph import build_graph, find_communities, label_communities
from avatarv.curate.pairs import make_pairs
from avatarv.curate.scoring import score


def _people(n_people: int, per: int, spread: float, seed: int = 0, dim: int = 32):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_people, dim))
    emb = np.concatenate([c + spread * rng.normal(size=(per, dim)) for c in centres])
    ids = [f"p{i}_c{j}" for i in range(n_people) for j in range(per)]
    return ids, emb / np.linalg.norm(emb, axis=1, keepdims=True)


@pytest.fixture
def cfg():
    return dataclasses.replace(load_config("tiny").curate, identity_threshold=0.6, strong_edge_threshold=0.95,
                               community_min_similarity=0.5, knn_k=6, min_triangle_support=1)


def _communities(ids, emb, cfg):
    g = build_graph(ids, emb, cfg)
    return g, find_communities(g, ids, emb, cfg, seed=0)


def test_well_separated_people_are_recovered_exactly(cfg):
    ids, emb = _people(4, 5, spread=0.15)
    _, comms = _communities(ids, emb, cfg)
    assert sorted(sorted(c) for c in comms) == sorted(sorted(i for i in ids if i.startswith(f"p{k}_")) for k in range(4))
    labels = label_communities(comms)
    assert len(set(labels.values())) == 4 and set(labels) == set(ids)


def test_a_bridge_clip_does_not_chain_two_people(cfg):
    """Two people plus one clip halfway between them: a plain threshold graph chains everything into one
    component; the safeguards keep the two people apart."""
    ids, emb = _people(2, 6, spread=0.1, seed=1)
    bridge = emb[:6].mean(0) + emb[6:].mean(0)
    emb = np.vstack([emb, bridge / np.linalg.norm(bridge)])
    ids = ids + ["bridge"]
    sim = emb @ emb.T
    a, b = emb[:6].mean(0), emb[6:].mean(0)
    plain = dataclasses.replace(cfg, identity_threshold=float(min(sim[12, :12].min(), 0.99)) - 1e-3, knn_k=100,
                                min_triangle_support=0, community_min_similarity=-1.0)
    import networkx as nx

    assert nx.number_connected_components(build_graph(ids, emb, plain)) == 1  # chained without safeguards
    assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) < cfg.community_min_similarity + 0.3
    _, comms = _communities(ids, emb, dataclasses.replace(plain, community_min_similarity=0.5))
    for c in comms:  # with the diameter check, no community holds both people
        people = {i.split("_")[0] for i in c if i != "bridge"}
        assert len(people) <= 1, c


def test_mutual_knn_and_triangle_support_prune_weak_bridges(cfg):
    ids, emb = _people(2, 5, spread=0.1, seed=2)
    sim = emb @ emb.T
    between = sim[:5, 5:].max()
    loose = dataclasses.replace(cfg, identity_threshold=float(between) - 1e-3, knn_k=100, min_triangle_support=0,
                                strong_edge_threshold=1.1)
    g_loose = build_graph(ids, emb, loose)
    cross = [(u, v) for u, v in g_loose.edges if u[:2] != v[:2]]
    assert cross  # the strongest cross-person pair is an edge without safeguards
    g_safe = build_graph(ids, emb, dataclasses.replace(loose, knn_k=4, min_triangle_support=2))
    assert not [(u, v) for u, v in g_safe.edges if u[:2] != v[:2]]
    assert all(d["similarity"] >= loose.identity_threshold for *_, d in g_safe.edges(data=True))


def _clips_table():
    rng = np.random.default_rng(0)
    bgs = {s: np.eye(4)[s] for s in range(3)}  # three distinct scene colour histograms
    rows = []
    for person in ("A", "B"):
        e = rng.normal(size=8)
        for scene in (0, 1):
            for k in range(2):
                cid = f"{person}_s{scene}_c{k}"
                bg = bgs[scene if person == "A" else scene + 1] * 0.9 + 0.025
                rows.append(dict(clip_id=cid, path=f"clips/{cid}.mp4", kept=True, identity_pred=f"P{person}",
                                 duration_s=3.0, face_embedding=list(e / np.linalg.norm(e)), background_hist=list(bg)))
    return pd.DataFrame(rows)


def test_pairs_link_only_other_scenes_of_the_same_identity(cfg):
    clips = _clips_table()
    clips.loc[clips.clip_id == "A_s1_c1", "kept"] = False
    pairs, scene_of = make_pairs(clips, cfg)
    # A: scene0 has 2 clips, scene1 has 1 kept clip → 2*1*2 ordered pairs; B: 2x2 → 8
    assert len(pairs) == 4 + 8
    assert (pairs.ref_scene != pairs.target_scene).all()
    assert (pairs.ref_clip_id.str[0] == pairs.target_clip_id.str[0]).all()
    assert "A_s1_c1" not in set(pairs.ref_clip_id) | set(pairs.target_clip_id)
    assert scene_of["B_s0_c0"] == scene_of["B_s0_c1"] != scene_of["B_s1_c0"]


def test_scoring_known_answers():
    clips = pd.DataFrame({
        "clip_id": ["a0", "a1", "b0", "b1", "d_sil", "d_off", "d_wi"],
        "kept": [True, True, True, False, False, True, False],
        "stage": ["", "", "", "quality", "speech", "", "identity"],
        "all_reasons": [json.dumps(x) for x in ([], [], [], ["quality: blurry"], ["speech: none"], [], ["identity: x"])],
        "av_offset_pred": [0, 1, 0, 0, np.nan, 1, 0],
        "identity_pred": ["P0", "P0", "P1", "P1", "", "P0", "P1"],
    })
    manifest = pd.DataFrame({
        "clip_id": ["a0", "a1", "b0", "b1", "d_sil", "d_off", "d_wi"],
        "distractor": ["", "", "", "", "silence", "av_offset", "wrong_identity"],
        "identity": ["A", "A", "B", "B", "A", "A", "A"], "scene_key": ["A0", "A1", "B0", "B1", "A0", "A1", "A1"],
        "av_offset_frames": [0, 0, 0, 0, 0, 5, 0],
        "flags": ["{}"] * 6 + [json.dumps({"true_identity": "B"})],
    })
    pairs = pd.DataFrame({"ref_clip_id": ["a0", "a1", "a0"], "target_clip_id": ["a1", "a0", "b0"]})
    s = score(clips, manifest, pairs)
    assert s["per_kind"]["silence"] == {"n": 1, "recall": 1.0, "reason_recall": 1.0}
    assert s["per_kind"]["av_offset"]["recall"] == 0.0 and s["per_kind"]["wrong_identity"]["recall"] == 1.0
    assert s["min_kind_recall"] == 0.0
    assert s["clean_false_rejection"] == 0.25
    assert s["av_offset_accuracy"] == pytest.approx(5 / 6)  # d_off predicted 1 vs truth 5
    # graph members: a0 a1 b0 b1 d_off (person A) d_wi (person B shown) → P0={a0,a1,d_off} P1={b0,b1,d_wi}
    assert s["identity"]["pairwise_precision"] == 1.0 and s["identity"]["pairwise_recall"] == 1.0
    assert s["identity"]["purity"] == 1.0
    assert s["pair_precision"] == pytest.approx(2 / 3)


def test_ingested_footage_has_no_ground_truth():
    from avatarv.curate.scoring import has_ground_truth

    real = pd.DataFrame({"clip_id": ["r0"], "distractor": [""], "identity": [""], "scene_key": [""],
                         "has_ground_truth": [False]})
    assert not has_ground_truth(real) and not has_ground_truth(None)
    assert has_ground_truth(real.assign(has_ground_truth=True)) and has_ground_truth(real.drop(columns="has_ground_truth"))
