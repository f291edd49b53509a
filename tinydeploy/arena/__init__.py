"""The TFLM tensor arena: how many bytes a model needs, predicted, measured and chosen.

One-way layers (a module imports only from the layers above it; tests/test_arena_layout.py
checks the graph is acyclic and follows this order):

1. library facts -- :mod:`.library` (struct and ``OpData`` sizes of each TFLM library);
2. the model as the allocator sees it -- :mod:`.graph`;
3. kernel sizes -- :mod:`.cmsis_nn`, :mod:`.kernels` (what each kernel's Prepare allocates);
4. allocator replay -- :mod:`.replay`;
5. prediction / measurement -- :mod:`.predict`, :mod:`.host` (TFLM Python runtime),
   :mod:`.measure` (TFLM firmware on qemu-cm4);
6. choice -- :mod:`.margin`, :mod:`.search` (``tinydeploy arena``), :mod:`.plan`
   (``generate --arena auto|tuned``), :mod:`.check` (``generate --arena N``).

``tinydeploy.arena`` is also the API function of ``tinydeploy arena``: calling the package
calls :func:`tinydeploy.arena.search.arena` (the package and the function share the name,
so the package module itself is callable). Nothing is imported here eagerly.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _ArenaPackage(types.ModuleType):
    """The package module, callable as :func:`tinydeploy.arena.search.arena`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from .search import arena

        return arena(*args, **kwargs)


sys.modules[__name__].__class__ = _ArenaPackage
