"""Video codecs behind the codec protocol: the embedded DVC-style codec, a GoP of it as a latent codec,
rdopt-video2's parts and CompressAI's ssf2020."""
