"""Ingest: the DICOM listener's library.

Admission policy (``policy``), the presentation contexts (``contexts``), streaming receive into
the spool (``spool``), header reading and validation without decoding pixels (``header``,
``validate``), admission into the store and database (``admit``), the one receive path that
every intake path ends in (``receive``), series tracking with the
quiet timer and settling into jobs (``series``, ``pyramid``), start-up reconcile
(``reconcile``), the storage SCP (``scp``) and the service that runs them (``service``). Audit
event codes are catalogued in ``events``, DICOM statuses in ``status``.
"""

from .admit import Admission, AdmissionOutcome, Admitter, ReceivedFile, Sender
from .events import IngestEvent
from .policy import AdmissionDecision, AdmissionPolicy
from .pyramid import PyramidCheck, check_pyramid
from .receive import IntakeInfo, IntakePath, ReceiveOutcome, Receiver, receive_instance
from .reconcile import ReconcileReport, reconcile
from .scp import StorageSCP
from .series import create_job, current_instances, settle_due_slides
from .service import JobsCreatedHook, ListenerService
from .status import StoreStatus
from .validate import InstanceLimits, InstanceSummary, validate_instance

__all__ = [
    "Admission",
    "AdmissionDecision",
    "AdmissionOutcome",
    "AdmissionPolicy",
    "Admitter",
    "IngestEvent",
    "InstanceLimits",
    "InstanceSummary",
    "IntakeInfo",
    "IntakePath",
    "JobsCreatedHook",
    "ListenerService",
    "PyramidCheck",
    "ReceiveOutcome",
    "ReceivedFile",
    "Receiver",
    "ReconcileReport",
    "Sender",
    "StorageSCP",
    "StoreStatus",
    "check_pyramid",
    "create_job",
    "current_instances",
    "receive_instance",
    "reconcile",
    "settle_due_slides",
    "validate_instance",
]
