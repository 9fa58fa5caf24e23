"""rdopt: optimization-based encoding for neural codecs.

The decoder and the bitstream format stay those of the trained codec; rdopt searches, per image, the
latents that minimise rate + λ·distortion and writes them with the codec's own entropy coder.
"""

__version__ = "0.1.0"
