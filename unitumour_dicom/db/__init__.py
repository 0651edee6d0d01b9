"""Database: models, sessions, migrations and the audit log."""

from .audit import record_event
from .enums import (
    AssociationState,
    DeliveryState,
    InstanceState,
    JobState,
    ResultKind,
    SlideState,
    UserRole,
)
from .models import (
    Association,
    AuditEvent,
    Base,
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
from .session import dispose_engines, get_engine, make_engine, session_scope

__all__ = [
    "Association",
    "AssociationState",
    "AuditEvent",
    "Base",
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
    "ResultKind",
    "Slide",
    "SlideState",
    "User",
    "UserRole",
    "dispose_engines",
    "get_engine",
    "make_engine",
    "record_event",
    "session_scope",
]
