"""Shared face toolbox: detection, 68-point landmarks, tracking, crops and identity embeddings, all offline.

Stable API other areas import (keep these signatures):
    detect_faces(frame, backend="mediapipe") -> list[Box]
    landmarks_68(frame, box) -> (68, 2)
    track_faces(frames, stride=5) -> (tracks, per_frame_detections)   every face, linked by IoU
    track_face(frames, stride=5) -> FaceTrack                           the talking face, one box per frame
    crop_resize(frame, box, (w, h)), mouth_box(face_box), mouth_crops(frames, boxes), face_crops(frames, boxes)
    embed_faces(frames, boxes, backend="dlib"|"arcface", model_path=None) -> (N, D)
Used by the curation cascade and identity graph (the seed's data pipeline), the sync expert and its training
loss, and the evaluation suite.
"""

from .box import Box
from .crop import crop_resize, face_crops, mouth_box, mouth_crops
from .detect import detect_faces
from .embed import cosine_similarity, embed_faces, load_arcface
from .landmarks import five_points, head_yaw_proxy, landmarks_68, mouth_opening
from .track import FaceTrack, Track, link_detections, track_face, track_faces, track_landmarks

__all__ = [
    "Box", "FaceTrack", "Track", "cosine_similarity", "crop_resize", "detect_faces", "embed_faces", "face_crops",
    "five_points", "head_yaw_proxy", "landmarks_68", "link_detections", "load_arcface", "mouth_box", "mouth_crops",
    "mouth_opening", "track_face", "track_faces", "track_landmarks",
]
