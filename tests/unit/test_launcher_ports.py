"""The internal ports of one start: distinct, and free for the services to listen on at 127.0.0.1."""

import socket

from mlopshub import launcher


def test_each_internal_service_gets_its_own_port_it_can_listen_on():
    ports = launcher.pick_internal_ports()
    assert sorted(ports) == sorted(launcher.INTERNAL_PORTS)
    assert len(set(ports.values())) == len(ports)
    listeners = []
    try:
        for port in ports.values():
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listeners.append(listener)
            listener.bind(("127.0.0.1", port))  # raises when the port was not free
            listener.listen()
    finally:
        for listener in listeners:
            listener.close()


def test_a_port_someone_listens_on_is_reported_in_use():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert launcher.port_in_use("127.0.0.1", port)
    assert not launcher.port_in_use("127.0.0.1", launcher.free_port())
