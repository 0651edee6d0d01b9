"""One result, many objects: the table of result kinds beyond the SEG (``registry``) and
their storage (``objects``). The SEG pyramid is written by ``seg``; SR, bulk annotations
and key image by ``sr``, ``ann`` and ``keyimage``, called through :data:`WRITERS`."""

from .objects import ResultObject, store_dataset
from .registry import WRITERS, WriterInputs, kind_order, write_result_objects

__all__ = [
    "WRITERS",
    "ResultObject",
    "WriterInputs",
    "kind_order",
    "store_dataset",
    "write_result_objects",
]
