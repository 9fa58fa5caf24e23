"""The neural codecs (the only package that imports CompressAI): the registry with the embedded weights,
the entropy-model wrappers, image codecs (:mod:`.image`) and video codecs (:mod:`.video`).

Importing this package registers CompressAI's package without its heavy ``__init__`` (see
:mod:`rdopt.codecs._compressai`) before any of its modules imports CompressAI; that imports nothing itself,
so :mod:`rdopt.codecs.names` and :mod:`rdopt.codecs.registry` stay free of torch.
"""

from ._compressai import prepare as _prepare

_prepare()
