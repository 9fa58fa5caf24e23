"""Image model names and qualities (no torch: the CLI builds its parser from these; λ per quality:
:data:`rdopt.codecs.registry.COMPRESSAI_LAMBDAS`)."""

EMBEDDED = "rdopt-msh"
EMBEDDED_QUALITIES = (2, 3, 4, 5, 6)
ARCHITECTURES = ("mbt2018-mean", "bmshj2018-hyperprior")
MODEL_NAMES = (EMBEDDED, *ARCHITECTURES)

__all__ = ["ARCHITECTURES", "EMBEDDED", "EMBEDDED_QUALITIES", "MODEL_NAMES"]
