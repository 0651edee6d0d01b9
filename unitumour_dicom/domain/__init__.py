"""Domain check: does a slide look like the data the model was validated on?

- ``stain``: stain/colour statistics of a tile's tissue (numpy).
- ``features``: the bottleneck hook and per-tile pooling of its activations (torch).
- ``reference``: ``DomainReference``, fitted on training tiles, thresholds from val; JSON in
  the model card's ``domain_reference`` field.
- ``accumulator``: ``DomainAccumulator`` fed per batch by inference, ``DomainResult``.
- ``fit``: fitting from a manifest and scoring images (``unitumour model fit-domain``).
- ``shifts``: the shifted copies of the domain benchmark.

Names are imported on first use so that ``unitumour --help`` does not import torch.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .accumulator import DomainAccumulator, DomainResult
    from .features import BottleneckHook, pool_features
    from .reference import DomainReference, GroupModel, ledoit_wolf
    from .stain import macenko_vectors, stain_features

__all__ = [
    "BottleneckHook",
    "DomainAccumulator",
    "DomainReference",
    "DomainResult",
    "GroupModel",
    "ledoit_wolf",
    "macenko_vectors",
    "pool_features",
    "stain_features",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DomainAccumulator": ".accumulator",
        "DomainResult": ".accumulator",
        "BottleneckHook": ".features",
        "pool_features": ".features",
        "DomainReference": ".reference",
        "GroupModel": ".reference",
        "ledoit_wolf": ".reference",
        "macenko_vectors": ".stain",
        "stain_features": ".stain",
    },
)
