"""Evaluation with the paper's metric: Dice per slide (or image), averaged per cohort, with
95% bootstrap CIs; false tumour area on tumour-free images; a table per class.

Works on image/mask manifests (``evaluate_pairs``) and on DICOM slides with reference SEGs
(``evaluate_slides``, which runs the production slide path).

The names below are imported on first use (``.images`` imports torch): the command's module,
``evaluate.command``, is imported by ``unitumour --help`` and must not pull torch in.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .images import evaluate_pairs, forward_probabilities
    from .metrics import bootstrap_ci, dice, false_tumour_fraction
    from .report import ItemResult, format_table, summarise

__all__ = [
    "ItemResult",
    "bootstrap_ci",
    "dice",
    "evaluate_pairs",
    "false_tumour_fraction",
    "format_table",
    "forward_probabilities",
    "summarise",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "evaluate_pairs": ".images",
        "forward_probabilities": ".images",
        "bootstrap_ci": ".metrics",
        "dice": ".metrics",
        "false_tumour_fraction": ".metrics",
        "ItemResult": ".report",
        "format_table": ".report",
        "summarise": ".report",
    },
)
