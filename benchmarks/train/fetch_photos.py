"""Fetch the natural photos among Debian's wallpaper packages for training the embedded models (phase 5).

    .venv/bin/python benchmarks/train/fetch_photos.py runs/photos

Downloads the packages with `apt-get download`, unpacks them with `dpkg-deb -x` (into OUT/deb, never
committed), keeps the photographs listed below and writes each, downscaled by area averaging to at most
1536 pixels on its long side (the sensor noise and JPEG artefacts of the 4-6K originals average out, and
`train --scales 1 0.5 0.25` then draws crops at 1536, 768 and 384 pixels), as PNG to OUT/train or OUT/stress.

How photos were told from drawings and renders: by looking at a contact sheet of every landscape-format
image in the five packages (80 files, one per wallpaper and variant). Kept: camera photographs (landscapes,
plants, animals, objects, architecture, sky); dropped: vector art, 3-D renders, paintings, gradients and
patterns (GNOME's whole set, most of Plasma's and Lomiri's abstract ones) and portrait-format duplicates.
Four photos are held out of training for the stress set (`stress`): a green leaf close-up in backlight
(the scale-floor collapse seen with the phase-4 weights), a red bowl on grey stone, green moss, and an aerial beach.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PACKAGES = ("plasma-workspace-wallpapers", "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04", "ukui-wallpapers",
            "gnome-backgrounds")
TRAIN = (
    "backgrounds/Bridge_by_Sander_Klootwijk.jpg", "backgrounds/Infinite-Sea_by_Aury88.jpg",
    "backgrounds/Kleiber_by_Lukas_Baubkus.jpg", "backgrounds/Picture_1A_by_freespace.jpg",
    "backgrounds/Wine_by_Jakkub_Mede.jpg", "backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg",
    "backgrounds/free_by_Peter_Nerlich.jpg", "backgrounds/friends_by_Aitzol_Berasategi.jpg",
    "backgrounds/greentock_by_Peter_Nerlich.jpg", "backgrounds/life_by_Aitzol_Berasategi.jpg",
    "backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg", "backgrounds/seeding_by_Clements_Engelhardt.jpg",
    "backgrounds/sunset_by_Aitzol_Berasategi.jpg", "wallpapers/BytheWater/contents/images/2560x1600.jpg",
    "wallpapers/ColdRipple/contents/images/2560x1600.jpg", "wallpapers/DarkestHour/contents/images/2560x1600.jpg",
    "wallpapers/EveningGlow/contents/images/2560x1600.jpg", "wallpapers/FallenLeaf/contents/images/2560x1600.jpg",
    "wallpapers/Grey/contents/images/2560x1600.jpg", "wallpapers/Kite/contents/images/2560x1600.jpg",
    "wallpapers/Path/contents/images/2560x1600.jpg", "wallpapers/summer_1am/contents/images/2560x1600.jpg",
)
STRESS = (
    "backgrounds/Dragonfly_by_Bolly.jpg", "backgrounds/Picture_0B_by_freespace.jpg",
    "wallpapers/OneStandsOut/contents/images/2560x1600.jpg", "wallpapers/Volna/contents/images/5120x2880.jpg",
)
LONG_SIDE = 1536


def main(out: str) -> None:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # trusted package files, up to 6000×4000
    root = Path(out)
    deb, x = root / "deb", root / "x"
    deb.mkdir(parents=True, exist_ok=True)
    for pkg in PACKAGES:
        if not any(deb.glob(pkg + "_*.deb")):
            subprocess.run(["apt-get", "download", pkg], cwd=deb, check=True)
    for f in sorted(deb.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(f), str(x)], check=True)
    for split, names in (("train", TRAIN), ("stress", STRESS)):
        (root / split).mkdir(exist_ok=True)
        for name in names:
            dst = root / split / (name.split("/")[1 if name.startswith("wallpapers/") else -1].rsplit(".", 1)[0] + ".png")
            if dst.is_file():
                continue
            with Image.open(x / "usr/share" / name) as im:
                im = im.convert("RGB")
                f = LONG_SIDE / max(im.size)
                if f < 1:
                    im = im.reduce(max(1, int(1 / f))) if (1 / f) >= 2 else im
                    f = LONG_SIDE / max(im.size)
                    if f < 1:
                        im = im.resize((round(im.width * f), round(im.height * f)), Image.Resampling.BOX)
                im.save(dst)
            print(split, dst.name, im.size)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/photos")
