"""Image model names and qualities (no torch: the CLI builds its parser from these; λ per quality:
:data:`rdopt.codecs.registry.COMPRESSAI_LAMBDAS`)."""

EMBEDDED = "rdopt-msh"
EMBEDDED_QUALITIES = (2, 3, 4, 5, 6)
# CompressAI's autoregressive context models (rdopt.codecs.image.context): their decode is serial
CONTEXT_ARCHITECTURES = ("mbt2018", "cheng2020-anchor", "cheng2020-attn")
ARCHITECTURES = ("mbt2018-mean", "bmshj2018-hyperprior", *CONTEXT_ARCHITECTURES)
MODEL_NAMES = (EMBEDDED, *ARCHITECTURES)

__all__ = ["ARCHITECTURES", "CONTEXT_ARCHITECTURES", "EMBEDDED", "EMBEDDED_QUALITIES", "MODEL_NAMES"]
