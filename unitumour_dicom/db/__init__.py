"""Database: models, sessions, migrations and the audit log."""

from .audit import record_event
from .cas import compare_and_set
from .enums import (
    AssociationState,
    AuditEventName,
    DeliveryState,
    InstanceState,
    JobState,
    SlideState,
    UserRole,
)
from .models import (
    Association,
    AuditEvent,
    Base,
    ConvertedFile,
    Delivery,
    DeliveryAttempt,
    Instance,
    Job,
    LoginSession,
    LoginThrottle,
    ModelVersion,
    Result,
    ResultInstance,
    Slide,
    User,
)
from .session import dispose_engines, get_engine, make_engine, rowcount, session_scope

__all__ = [
    "Association",
    "AssociationState",
    "AuditEvent",
    "AuditEventName",
    "Base",
    "ConvertedFile",
    "Delivery",
    "DeliveryAttempt",
    "DeliveryState",
    "Instance",
    "InstanceState",
    "Job",
    "JobState",
    "LoginSession",
    "LoginThrottle",
    "ModelVersion",
    "Result",
    "ResultInstance",
    "Slide",
    "SlideState",
    "User",
    "UserRole",
    "compare_and_set",
    "dispose_engines",
    "get_engine",
    "make_engine",
    "record_event",
    "rowcount",
    "session_scope",
]
