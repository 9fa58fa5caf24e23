"""The neural codecs (the only package that imports CompressAI): the registry with the embedded weights,
the entropy-model wrappers, image codecs (:mod:`.image`) and video codecs (:mod:`.video`)."""
