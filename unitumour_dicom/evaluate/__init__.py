"""Evaluation with the paper's metric: Dice per slide (or image), averaged per cohort, with
95% bootstrap CIs; false tumour area on tumour-free images; a table per class.

Works on image/mask manifests (``evaluate_pairs``) and on DICOM slides with reference SEGs
(``evaluate_slides``, which runs the production slide path).
"""

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
