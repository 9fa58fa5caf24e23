"""The bottom vocabulary: named latents, the codec protocol and typed results (:mod:`.types`), the R-D cost
(:mod:`.rd`), bit-exact CPU computation (:mod:`.determinism`)."""
