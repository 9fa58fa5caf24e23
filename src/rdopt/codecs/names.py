"""Image model names and qualities (no torch: the CLI builds its parser from these; λ per quality:
:data:`rdopt.codecs.registry.COMPRESSAI_LAMBDAS`)."""

EMBEDDED = "rdopt-msh"
EMBEDDED_QUALITIES = (2, 3, 4, 5, 6)
# CompressAI's autoregressive context models (rdopt.codecs.image.context): their decode is serial
CONTEXT_ARCHITECTURES = ("mbt2018", "cheng2020-anchor", "cheng2020-attn")
# CompressAI's latent-codec models with checkerboard / channel-group contexts (rdopt.codecs.image.parallel): their
# decode is parallel; CompressAI publishes no weights for them (--checkpoint)
PARALLEL_ARCHITECTURES = ("cheng2020-anchor-checkerboard", "elic2022-official", "elic2022-chandelier")
# CompressAI's hyperpriors without context (rdopt.codecs.image.hyperprior)
HYPERPRIOR_ARCHITECTURES = ("mbt2018-mean", "bmshj2018-hyperprior")
ARCHITECTURES = (*HYPERPRIOR_ARCHITECTURES, *CONTEXT_ARCHITECTURES, *PARALLEL_ARCHITECTURES)
# rdopt-msh grown into a space-channel context model (rdopt.codecs.image.scc)
SCC = "rdopt-scc"
MODEL_NAMES = (EMBEDDED, SCC, *ARCHITECTURES)
# rdopt's own image models (shipped weights, qualities 2-6); a checkpoint given for either is read as the
# architecture its state dict holds
EMBEDDED_MODELS = (EMBEDDED, SCC)
# the models whose amortized encode of a large image runs tile by tile (rdopt.api.image.encodes_in_tiles: a g_a of
# plain strided convolutions and entropy models that run on the latents in parallel)
TILED_ENCODE_MODELS = (EMBEDDED, SCC, *HYPERPRIOR_ARCHITECTURES)
# the image model of a command or library call that names none
DEFAULT_IMAGE_MODEL = SCC

__all__ = ["ARCHITECTURES", "CONTEXT_ARCHITECTURES", "DEFAULT_IMAGE_MODEL", "EMBEDDED", "EMBEDDED_MODELS",
           "EMBEDDED_QUALITIES", "HYPERPRIOR_ARCHITECTURES", "MODEL_NAMES", "PARALLEL_ARCHITECTURES", "SCC",
           "TILED_ENCODE_MODELS"]
