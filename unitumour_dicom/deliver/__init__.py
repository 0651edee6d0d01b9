"""Delivery of results: destinations and routing rules, the C-STORE SCU, retries.

Modules: ``routing`` (plan_deliveries: one row per destination of a result), ``attempts``
(attempt_delivery, due_deliveries, retry_delivery: one try, backoff with jitter, failure after
the maximum age), ``scu`` (send_instances: one association, negotiated transfer syntaxes).
"""

from .attempts import attempt_delivery, backoff_delay_s, due_deliveries, retry_delivery
from .routing import plan_deliveries, route
from .scu import Destination, SendReport, send_instances

__all__ = [
    "Destination",
    "SendReport",
    "attempt_delivery",
    "backoff_delay_s",
    "due_deliveries",
    "plan_deliveries",
    "retry_delivery",
    "route",
    "send_instances",
]
