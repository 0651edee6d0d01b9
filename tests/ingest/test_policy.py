"""The admission policy, decided from calling/called AE titles and the peer's address."""

from __future__ import annotations

import pytest

from unitumour_dicom.config.sections import ListenerSettings
from unitumour_dicom.ingest import AdmissionPolicy
from unitumour_dicom.ingest.status import CALLED_AE_NOT_RECOGNIZED, CALLING_AE_NOT_RECOGNIZED

pytestmark = [pytest.mark.unittest]


def policy(**settings) -> AdmissionPolicy:
    base = {
        "ae_title": "UNITUMOUR",
        "quiet_seconds": 30,
        "callers": [
            {"ae_title": "SCANNER", "networks": ["10.1.0.0/16"], "quiet_seconds": 120},
            {"ae_title": "SCANNER", "networks": ["192.168.5.7"]},
            {"ae_title": "PACS"},
        ],
    }
    return AdmissionPolicy(ListenerSettings(**{**base, **settings}))


def test_a_listed_caller_from_its_network_is_accepted_with_its_overrides():
    decision = policy().decide(calling_ae="SCANNER", called_ae="UNITUMOUR", peer_host="10.1.2.3")
    assert decision.accepted
    assert decision.quiet_seconds == 120
    assert decision.rule is not None and decision.rule.networks == ["10.1.0.0/16"]


def test_the_first_matching_rule_wins_and_defaults_fill_in():
    decision = policy().decide(calling_ae="SCANNER", called_ae="UNITUMOUR", peer_host="192.168.5.7")
    assert decision.accepted and decision.quiet_seconds == 30
    pacs = policy().decide(calling_ae="PACS", called_ae="UNITUMOUR", peer_host="172.16.0.9")
    assert pacs.accepted and pacs.rule.ae_title == "PACS"


def test_a_known_caller_from_elsewhere_is_rejected_and_says_so():
    decision = policy().decide(calling_ae="SCANNER", called_ae="UNITUMOUR", peer_host="10.2.0.1")
    assert not decision.accepted
    assert decision.rejection == CALLING_AE_NOT_RECOGNIZED
    assert "not allowed from 10.2.0.1" in decision.reason


def test_an_unknown_caller_is_rejected():
    decision = policy().decide(calling_ae="INTRUDER", called_ae="UNITUMOUR", peer_host="10.1.2.3")
    assert not decision.accepted
    assert decision.rejection == CALLING_AE_NOT_RECOGNIZED
    assert decision.rejection.as_tuple == (0x01, 0x01, 0x03)
    assert "'INTRUDER' is not on the allowed list" in decision.reason


def test_a_wrong_called_ae_title_is_rejected_first():
    decision = policy().decide(calling_ae="PACS", called_ae="OTHER", peer_host="10.1.2.3")
    assert decision.rejection == CALLED_AE_NOT_RECOGNIZED
    assert decision.rejection.as_tuple == (0x01, 0x01, 0x07)


def test_ae_titles_are_compared_without_their_padding():
    decision = policy().decide(calling_ae="PACS  ", called_ae="UNITUMOUR       ", peer_host="::1")
    assert decision.accepted


def test_ipv4_mapped_ipv6_addresses_match_ipv4_networks():
    decision = policy().decide(
        calling_ae="SCANNER", called_ae="UNITUMOUR", peer_host="::ffff:10.1.9.9"
    )
    assert decision.accepted and decision.quiet_seconds == 120


def test_accept_any_caller_lets_unknown_callers_in_with_the_default_quiet_time():
    decision = policy(accept_any_caller=True).decide(
        calling_ae="ANYONE", called_ae="UNITUMOUR", peer_host="10.9.9.9"
    )
    assert decision.accepted and decision.rule is None and decision.quiet_seconds == 30


def test_rule_for_finds_the_destinations_of_a_source():
    p = policy(callers=[{"ae_title": "PACS", "destinations": []}])
    assert p.rule_for("PACS", "10.0.0.1").ae_title == "PACS"
    assert p.rule_for("NOBODY", "10.0.0.1") is None
