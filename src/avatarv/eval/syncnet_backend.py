"""SyncNet (Chung & Zisserman 2016) through syncnet-python, with weights the user supplies (seed: "SyncNet
confidence 8.97"; the number every talking-head paper reports).

No weights can be downloaded here, so `load_syncnet(path)` loads a user's `syncnet_v2.model` state dict into
syncnet-python's network. Scoring follows SyncNet's own protocol on our face track: 224x224 face crops framed
as syncnet-python frames them (crop_scale 0.4: the box widened sideways and extended downwards over the mouth),
13 MFCCs (python_speech_features, 100 Hz) on 16-bit-scaled 16 kHz audio, 5-frame / 20-MFCC windows, euclidean
distances over ±vshift frames with zero padding; offset = vshift - argmin, LSE-D = min mean distance,
LSE-C = median - min. With S3FD weights too, `full_pipeline` runs syncnet-python's own SyncNetPipeline.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from ..media import resample

BACKEND = "syncnet-python SyncNet (user weights)"
CROP_SCALE = 0.40
SAMPLE_RATE = 16000


def load_syncnet(path, device: str = "cpu"):
    """syncnet-python's network with the state dict at `path` (FileNotFoundError naming it when absent)."""
    from pathlib import Path

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: SyncNet weights file not found (syncnet_v2.model)")
    from syncnet_python import SyncNetModel

    model = SyncNetModel()
    model.load_state_dict(torch.load(str(path), map_location=device))
    return model.to(device).eval()


def syncnet_crops(frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(T, 224, 224, 3) BGR crops framed like syncnet-python (grey padding outside the frame)."""
    out = []
    for f, b in zip(frames, boxes):
        bgr = np.ascontiguousarray(f[..., ::-1])
        bs = max(b[3] - b[1], b[2] - b[0]) / 2
        x, y = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        pad = int(bs * (1 + 2 * CROP_SCALE))
        img = cv2.copyMakeBorder(bgr, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(110, 110, 110))
        my, mx = y + pad, x + pad
        crop = img[int(my - bs) : int(my + bs * (1 + 2 * CROP_SCALE)), int(mx - bs * (1 + CROP_SCALE)) : int(mx + bs * (1 + CROP_SCALE))]
        out.append(cv2.resize(crop, (224, 224)))
    return np.stack(out)


def mfcc_features(audio_int16: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    import python_speech_features

    return np.asarray(python_speech_features.mfcc(audio_int16, sample_rate), np.float64).T  # (13, N)


@torch.no_grad()
def syncnet_from_crops(model, crops_bgr: np.ndarray, audio_int16: np.ndarray, vshift: int = 15,
                       batch_size: int = 20, device: str = "cpu") -> dict:
    """SyncNet's evaluate() on prepared crops (T, 224, 224, 3 BGR) and 16 kHz int16 audio."""
    mfcc = mfcc_features(audio_int16)
    n = min(len(crops_bgr), len(audio_int16) // 640)
    last = n - 5
    if last <= 0:
        raise ValueError(f"SyncNet: clip has {n} usable frames, needs more than 5")
    video = torch.from_numpy(crops_bgr.astype(np.float32)).permute(3, 0, 1, 2)[None]  # (1, 3, T, H, W)
    cc = torch.from_numpy(mfcc.astype(np.float32))[None, None]  # (1, 1, 13, N)
    im_feat, cc_feat = [], []
    for i in range(0, last, batch_size):
        js = range(i, min(last, i + batch_size))
        im_feat.append(model.forward_lip(torch.cat([video[:, :, j : j + 5] for j in js]).to(device)).cpu())
        cc_feat.append(model.forward_aud(torch.cat([cc[:, :, :, 4 * j : 4 * j + 20] for j in js]).to(device)).cpu())
    im, au = torch.cat(im_feat), torch.cat(cc_feat)
    win = 2 * vshift + 1
    aup = torch.nn.functional.pad(au, (0, 0, vshift, vshift))
    dists = torch.stack([torch.nn.functional.pairwise_distance(im[[i]].repeat(win, 1), aup[i : i + win])
                         for i in range(len(im))])  # (T', win)
    mdist = dists.mean(0)
    minval, minidx = torch.min(mdist, 0)
    return {"offset": int(vshift - minidx), "lse_c": float(torch.median(mdist) - minval), "lse_d": float(minval),
            "backend": BACKEND}


def syncnet_scores(model, frames: np.ndarray, audio: np.ndarray, sample_rate: int, boxes: np.ndarray,
                   vshift: int = 15) -> dict:
    """SyncNet LSE-C / LSE-D / offset of one clip from our face track."""
    if sample_rate != SAMPLE_RATE:
        audio = resample(audio, sample_rate, SAMPLE_RATE)
    pcm = np.clip(np.asarray(audio) * 32767, -32768, 32767).astype(np.int16)
    return syncnet_from_crops(model, syncnet_crops(frames, boxes), pcm, vshift)


def full_pipeline(video_path: str, syncnet_weights: str, s3fd_weights: str, device: str = "cpu") -> dict:
    """syncnet-python's own SyncNetPipeline (S3FD detection, scene cuts, tracking, cropping) on one file."""
    from syncnet_python import SyncNetPipeline

    pipe = SyncNetPipeline({"s3fd_weights": s3fd_weights, "syncnet_weights": syncnet_weights}, device=device)
    offsets, confs, _dists, conf, dist, _, has_face = pipe.inference(str(video_path), None)
    return {"offset": int(offsets[int(np.argmax(confs))]) if offsets else 0, "lse_c": float(conf), "lse_d": float(dist),
            "has_face": bool(has_face), "backend": "syncnet-python SyncNetPipeline (S3FD + SyncNet, user weights)"}
