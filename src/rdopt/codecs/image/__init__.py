"""Image codecs behind the codec protocol: the CompressAI hyperprior adapter, its bits-back variant,
widening and tiled decoding."""
