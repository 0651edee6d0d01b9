"""Admission policy: who may associate, from where, and what applies to what they send.

Decided once per association from the A-ASSOCIATE-RQ (calling and called AE titles) and the
peer's address, before any data is accepted. The first caller rule whose AE title and networks
match wins; its overrides (quiet time, result destinations) then apply to that association.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..config.sections import CallerRule, ListenerSettings
from .status import (
    CALLED_AE_NOT_RECOGNIZED,
    CALLING_AE_NOT_RECOGNIZED,
    AssociationRejection,
)


@dataclass(frozen=True)
class AdmissionDecision:
    """Whether an association is accepted, why not, and the caller rule that admitted it."""

    accepted: bool
    reason: str
    rejection: AssociationRejection | None = None
    rule: CallerRule | None = None
    quiet_seconds: float = 30.0

    @property
    def destinations(self) -> list[str]:
        return list(self.rule.destinations) if self.rule else []


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:10.0.0.1 from a dual-stack socket is 10.0.0.1
    return address


class AdmissionPolicy:
    """The listener's admission rules, built from its settings."""

    def __init__(self, settings: ListenerSettings) -> None:
        self.ae_title = settings.ae_title
        self.accept_any_caller = settings.accept_any_caller
        self.default_quiet_seconds = settings.quiet_seconds
        self.rules = list(settings.callers)
        self._networks = [
            [ipaddress.ip_network(net, strict=False) for net in rule.networks]
            for rule in self.rules
        ]

    def decide(self, *, calling_ae: str, called_ae: str, peer_host: str) -> AdmissionDecision:
        """Accept or reject an association request; the reason is fit for the audit log."""
        calling = calling_ae.strip()
        called = called_ae.strip()
        if called != self.ae_title:
            return AdmissionDecision(
                False,
                f"called AE title {called!r} is not this listener's {self.ae_title!r}",
                CALLED_AE_NOT_RECOGNIZED,
            )
        address = _address(peer_host)
        ae_known = False
        for rule, networks in zip(self.rules, self._networks, strict=True):
            if rule.ae_title != calling:
                continue
            ae_known = True
            if networks and (address is None or not any(address in n for n in networks)):
                continue
            quiet = rule.quiet_seconds or self.default_quiet_seconds
            return AdmissionDecision(
                True, f"caller {calling!r} from {peer_host} allowed", rule=rule, quiet_seconds=quiet
            )
        if self.accept_any_caller:
            return AdmissionDecision(
                True,
                f"caller {calling!r} from {peer_host} accepted (accept_any_caller)",
                quiet_seconds=self.default_quiet_seconds,
            )
        if ae_known:
            reason = f"caller {calling!r} is not allowed from {peer_host}"
        else:
            reason = f"calling AE title {calling!r} is not on the allowed list"
        return AdmissionDecision(False, reason, CALLING_AE_NOT_RECOGNIZED)

    def rule_for(self, calling_ae: str, peer_host: str) -> CallerRule | None:
        """The caller rule that applies to a sender (e.g. to route its results)."""
        decision = self.decide(calling_ae=calling_ae, called_ae=self.ae_title, peer_host=peer_host)
        return decision.rule
