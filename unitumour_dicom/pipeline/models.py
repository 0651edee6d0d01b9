"""One loaded model per process: weights are read and verified once, not per job."""

from __future__ import annotations

import logging
import threading

from ..config.sections import ModelSettings
from ..model import LoadedModel, load_model, select_device

log = logging.getLogger(__name__)


class ModelProvider:
    """Loads the configured model on first use and keeps it for the life of the process.

    A worker process serves one GPU (or the CPU) and one model, so there is exactly one
    entry; the lock keeps two threads from loading it twice.
    """

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings
        self._model: LoadedModel | None = None
        self._lock = threading.Lock()

    def get(self) -> LoadedModel:
        with self._lock:
            if self._model is None:
                device = select_device(self.settings.device)
                source = self.settings.path
                self._model = load_model(source, device=device)
                card = self._model.card
                log.info(
                    "model %s %s (%s) loaded on %s",
                    card.name,
                    card.version,
                    card.weights_sha256[:12],
                    device,
                )
            return self._model

    @classmethod
    def of(cls, model: LoadedModel, settings: ModelSettings | None = None) -> ModelProvider:
        """A provider that hands out an already loaded model (tests, benchmarks)."""
        provider = cls(settings or ModelSettings())
        provider._model = model
        return provider
