"""Shared face toolbox: detection, 68-point landmarks, tracking and identity embeddings, all offline.

Stable API other areas import (keep these signatures):
    detect_faces(frame, backend="mediapipe") -> list[Box]
    landmarks_68(frame, box) -> (68, 2)
    track_faces(frames, stride=5) -> (tracks, per_frame_detections)
    embed_faces(frames, boxes, backend="dlib"|"arcface", model_path=None) -> (N, D)
Used by the curation cascade and identity graph (the seed's data pipeline) and by the evaluation suite.
"""

from .box import Box
from .detect import detect_faces
from .embed import cosine_similarity, embed_faces, load_arcface
from .landmarks import five_points, head_yaw_proxy, landmarks_68, mouth_opening
from .track import Track, link_detections, track_faces

__all__ = [
    "Box", "Track", "cosine_similarity", "detect_faces", "embed_faces", "five_points", "head_yaw_proxy",
    "landmarks_68", "link_detections", "load_arcface", "mouth_opening", "track_faces",
]
