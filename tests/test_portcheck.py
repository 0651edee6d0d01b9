"""The port check that does not connect: it sees a listening socket, and nothing else."""

from __future__ import annotations

import socket

import pytest

from unitumour_dicom.portcheck import is_listening

pytestmark = pytest.mark.unittest


def test_a_listening_socket_is_seen_and_a_closed_one_is_not() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        assert not is_listening(port)  # bound, not listening yet
        server.listen()
        assert is_listening(port)
        server.settimeout(0.2)
        with pytest.raises(TimeoutError):
            server.accept()  # the check made no connection
    assert not is_listening(port)


def test_a_connected_client_port_is_not_a_listener() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()) as client:
            assert not is_listening(client.getsockname()[1])
