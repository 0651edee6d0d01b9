"""The listener's pynetdicom transport, without a network: what its state machine does with
an answer that arrives after the peer is gone."""

from __future__ import annotations

import pytest
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.fsm import InvalidEventError
from pynetdicom.pdu_primitives import P_DATA

from unitumour_dicom.ingest.transport import ListenerDUL

pytestmark = pytest.mark.unittest


def _upper_layer(listener: bool) -> tuple[Association, ListenerDUL]:
    assoc = Association(AE(), "acceptor")
    dul = assoc.dul
    if listener:
        dul.__class__ = ListenerDUL
        dul.attach()
    return assoc, dul


@pytest.mark.parametrize("state", ["Sta13", "Sta1"])
def test_an_answer_after_the_peer_aborted_is_dropped_not_fatal(state: str) -> None:
    _, dul = _upper_layer(listener=True)
    dul.state_machine.current_state = state
    dul.send_pdu(P_DATA())  # the association thread's C-STORE response, too late
    assert dul._process_recv_primitive()
    dul.state_machine.do_action(dul.event_queue.get(block=False))
    assert dul.to_provider_queue.empty()
    assert dul.state_machine.current_state == state
    dul._wake_r.close()
    dul._wake_w.close()


def test_pynetdicom_alone_raises_there() -> None:
    """What the listener's upper layer guards against (its thread would die of it)."""
    _, dul = _upper_layer(listener=False)
    dul.state_machine.current_state = "Sta13"
    dul.send_pdu(P_DATA())
    assert dul._process_recv_primitive()
    with pytest.raises(InvalidEventError):
        dul.state_machine.do_action(dul.event_queue.get(block=False))
