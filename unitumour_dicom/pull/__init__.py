"""Pull intake: query PACSs that cannot push for new slide series and retrieve them.

Sources are configured under ``[[pull.sources]]``: DICOMweb (QIDO-RS to find, WADO-RS to
retrieve, ``dicomweb``) or DIMSE (C-FIND, then C-GET or C-MOVE, ``dimse``). A poll
(``poller``) asks each source for Modality SM series from its watermark (``watermark``, the
``pull_watermarks`` table) minus an overlap (``query``), skips series already received,
retrieves the rest and admits each instance through one call (``receive``). It runs in the
listener's pull loop and in ``unitumour pull run``. Audit codes are in ``events``.
"""

from .events import PullEvent
from .poller import Poller, SourceReport
from .query import PullError, SeriesHit, SeriesQuery, series_query
from .receive import PullIntake, PullOutcome, PullReceiver, receive_pulled

__all__ = [
    "Poller",
    "PullError",
    "PullEvent",
    "PullIntake",
    "PullOutcome",
    "PullReceiver",
    "SeriesHit",
    "SeriesQuery",
    "SourceReport",
    "receive_pulled",
    "series_query",
]
