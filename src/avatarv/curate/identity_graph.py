"""Cross-clip identity graph (seed: "a graph connecting video clips of the same person across different
scenes"): clips are nodes, face-similar clips are joined by edges, and graph communities are identities.

Chaining is the classic failure of similarity graphs: A~B and B~C pulls A and C (two people) into one
component. Four safeguards stop it:
0. a voice check: clips whose speaker embeddings differ are never linked, however alike the faces;
1. mutual k-nearest neighbours: an edge needs each clip among the other's `knn_k` most similar clips;
2. triangle support: an edge below `strong_edge_threshold` needs `min_triangle_support` common neighbours, so a
   single stray bridge between two dense groups is cut;
3. per-community diameter check: communities come from networkx Louvain (seeded, weighted by similarity);
   any community whose least similar pair is below `community_min_similarity` is split again (higher
   resolution, then peeling off its least typical member) until every pair inside it is similar enough.
"""

from __future__ import annotations

from collections import deque

import networkx as nx
import numpy as np

from ..config import CurateConfig


def similarity_matrix(emb: np.ndarray) -> np.ndarray:
    e = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-8)
    return e @ e.T


def build_graph(ids: list[str], emb: np.ndarray, cfg: CurateConfig, voice: list[np.ndarray] | None = None) -> nx.Graph:
    """Nodes = clip ids; edges (similarity attribute) that pass the threshold, mutual-kNN and triangle checks.

    With `voice` (one speaker embedding per clip, empty where unknown), two clips whose voices are both known
    must also sound alike (cosine >= voice_threshold) to be linked.
    """
    n = len(ids)
    g = nx.Graph()
    g.add_nodes_from(ids)
    if n < 2:
        return g
    s = similarity_matrix(emb)
    np.fill_diagonal(s, -np.inf)
    if voice is not None:
        known = np.array([len(v) > 0 for v in voice])
        if known.sum() >= 2:
            dim = max(len(v) for v in voice)
            vm = np.stack([np.asarray(v, np.float32) if len(v) else np.zeros(dim, np.float32) for v in voice])
            mismatch = np.outer(known, known) & (similarity_matrix(vm) < cfg.voice_threshold)
            s = np.where(mismatch, -np.inf, s)  # a different voice rules the pair out entirely (kNN included)
    k = min(cfg.knn_k, n - 1)
    knn = [set(np.argsort(-s[i], kind="stable")[:k].tolist()) for i in range(n)]
    cand = {(i, j) for i in range(n) for j in knn[i] if i < j and i in knn[j] and s[i, j] >= cfg.identity_threshold}
    nbrs: dict[int, set[int]] = {i: set() for i in range(n)}
    for i, j in cand:
        nbrs[i].add(j)
        nbrs[j].add(i)
    for i, j in sorted(cand):
        support = len(nbrs[i] & nbrs[j])
        if s[i, j] >= cfg.strong_edge_threshold or support >= cfg.min_triangle_support:
            g.add_edge(ids[i], ids[j], similarity=float(s[i, j]), support=support)
    return g


def _diameter_ok(members: list[str], index: dict[str, int], s: np.ndarray, floor: float) -> bool:
    idx = [index[m] for m in members]
    sub = s[np.ix_(idx, idx)]
    return len(idx) < 2 or float(sub[np.triu_indices(len(idx), 1)].min()) >= floor


def find_communities(g: nx.Graph, ids: list[str], emb: np.ndarray, cfg: CurateConfig, seed: int) -> list[list[str]]:
    """Louvain communities that all pass the diameter check, sorted by their first clip id."""
    s = similarity_matrix(emb) if len(ids) else np.zeros((0, 0))
    index = {c: i for i, c in enumerate(ids)}
    first = nx.community.louvain_communities(g, weight="similarity", seed=seed) if g.number_of_nodes() else []
    todo = deque(sorted(sorted(c) for c in first))
    done: list[list[str]] = []
    while todo:
        members = todo.popleft()
        if _diameter_ok(members, index, s, cfg.community_min_similarity):
            done.append(members)
            continue
        sub = g.subgraph(members)
        parts: list[list[str]] = []
        for resolution in (2.0, 4.0, 8.0):
            parts = [sorted(p) for p in nx.community.louvain_communities(sub, weight="similarity", resolution=resolution, seed=seed)]
            if len(parts) > 1:
                break
        if len(parts) <= 1:  # Louvain will not split it: peel off the member least similar to the rest
            idx = [index[m] for m in members]
            mean_sim = s[np.ix_(idx, idx)].sum(axis=1) / (len(idx) - 1) - 1 / (len(idx) - 1)
            worst = members[int(np.argmin(mean_sim))]
            parts = [[m for m in members if m != worst], [worst]]
        todo.extend(sorted(parts))
    return sorted(done, key=lambda c: c[0])


def label_communities(communities: list[list[str]], prefix: str = "P") -> dict[str, str]:
    """clip id → predicted identity label ('P000', ...), numbered by community order."""
    return {clip: f"{prefix}{k:03d}" for k, members in enumerate(communities) for clip in members}


def edge_table(g: nx.Graph):
    import pandas as pd

    rows = sorted((min(u, v), max(u, v), d["similarity"]) for u, v, d in g.edges(data=True))
    return pd.DataFrame(rows, columns=["src", "dst", "similarity"])
