"""Regenerate the golden video files (only when the ``.rdov`` format changes on purpose):

    .venv/bin/python tests/data/golden/make_golden_video.py

``tiny_video.pt`` is a tiny random-weight P-frame checkpoint (``save_shipped``; the I-frame codec is the
embedded image model of quality 2). ``tiny_colour.rdov`` and ``tiny_gray_noflag.rdov`` are 64×64 clips of 4
frames in GoPs of 2, the second of gray frames (R = G = B), both as rdopt wrote ``.rdov`` files before the
header had a grayscale flag (flags bit 1 clear) and before skip mode (no skip streams): they must keep decoding
to the same colour frames.
``tiny_video_decoded.json`` holds the SHA-256 of each decoded RGB frame (``frame.tobytes()``) and of the
``rdopt decode -o out.y4m`` file of each, as that rdopt decoded them with one thread (the P-frame decoder's
float sums, and so a pixel now and then, depend on the thread count: the tests decode with ``--threads 1``).
``tiny_video_decoded.npz`` holds the decoded frames and Y4M bytes themselves, which the tests compare within a level
or two (``conftest.assert_decodes_as_recorded``): the float sums depend on the CPU's vector width as well, so the
hashes hold on the machine that made them only.
"""

import hashlib
import json
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

here = Path(__file__).resolve().parent
root = here.parents[2]
sys.path.insert(0, str(here.parents[1]))

from video_fixtures import moving_clip, tiny_video_checkpoint  # noqa: E402

from rdopt.api.video import decode_video_frames, encode_video, load_video_codec  # noqa: E402
from rdopt.coding.rdov import pack_video, unpack_video  # noqa: E402

torch.set_num_threads(1)
ckpt = tiny_video_checkpoint(here / "tiny_video.pt")
codec = load_video_codec(checkpoint=ckpt)
colour = moving_clip(4, 64, 64, seed=5)
gray = [np.repeat(f[..., 1:2], 3, axis=2) for f in moving_clip(4, 64, 64, seed=6)]
doc, arrays = {}, {}
with tempfile.TemporaryDirectory() as d:
    for name, frames in (("tiny_colour.rdov", colour), ("tiny_gray_noflag.rdov", gray)):
        path = here / name
        encode_video(codec, frames, path, gop=2, progress=False, skip=False)  # as files were before skip mode
        header, gops = unpack_video(path.read_bytes())
        if getattr(header, "grayscale", False):  # written without the flag, as before the flag existed
            path.write_bytes(pack_video(replace(header, grayscale=False), gops))
        decoded = decode_video_frames(path.read_bytes(), codec=codec)
        y4m = Path(d) / "out.y4m"
        subprocess.run([sys.executable, "-m", "rdopt", "decode", str(path), "-o", str(y4m), "--checkpoint", str(ckpt),
                        "--threads", "1"],
                       check=True, cwd=root, env={"PYTHONPATH": str(root / "src"), "PATH": ""})
        doc[name] = {"frames_sha256": [hashlib.sha256(f.tobytes()).hexdigest() for f in decoded],
                     "y4m_sha256": hashlib.sha256(y4m.read_bytes()).hexdigest(),
                     "max_channel_difference": int(max(np.ptp(f.astype(int), axis=2).max() for f in decoded))}
        arrays[name.split(".")[0] + ".frames"] = np.stack(decoded)
        arrays[name.split(".")[0] + ".y4m"] = np.frombuffer(y4m.read_bytes(), np.uint8)
(here / "tiny_video_decoded.json").write_text(json.dumps(doc, indent=2) + "\n")
np.savez_compressed(here / "tiny_video_decoded.npz", **arrays)
print(json.dumps(doc, indent=2))
