"""Delivery of results: destinations and routing rules, the C-STORE SCU, retries.

Modules: ``routing`` (plan_deliveries: one row per destination of a result), ``process``
(deliver_one: claim, one try, outcome; the one path for every sender), ``attempts``
(attempt_delivery, due_deliveries, resend_delivery: one try, backoff with jitter, failure after
the maximum age, a person's re-send), ``scu`` (send_instances: one association, negotiated
transfer syntaxes).
"""

from .attempts import attempt_delivery, backoff_delay_s, due_deliveries, resend_delivery
from .process import DeliveryOutcome, deliver_one, delivery_lease_s
from .routing import plan_deliveries, route
from .scu import Destination, SendReport, send_instances

__all__ = [
    "DeliveryOutcome",
    "Destination",
    "SendReport",
    "attempt_delivery",
    "backoff_delay_s",
    "deliver_one",
    "delivery_lease_s",
    "due_deliveries",
    "plan_deliveries",
    "resend_delivery",
    "route",
    "send_instances",
]
