"""The evaluation suite (seed: "How Good Is It? — SyncNet confidence, face similarity, Q-Align"), with every
metric validated on known answers and every number labelled with the backend that produced it.

Modules: sync_expert (lip-sync scores from the in-repo SyncNet-style judge of models/sync_expert), syncnet_backend
(SyncNet with user weights), identity, quality, mouth, motion_dynamics, drift, benchmark (cross-scene split),
systems (baselines + checkpoint generation), runner (score a folder), leaderboard, cli (`avatarv eval`).
"""
