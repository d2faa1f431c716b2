"""Kernel receive timestamps (agent.net.sockets.enable_timestamps): on where the system has them, a warning
and the read time where it refuses them (qemu-user, as in the emulated Raspberry Pi roots)."""

from __future__ import annotations

import errno
import logging
import socket

import pytest

from agent.net.sockets import enable_timestamps, parse_timestamp


def test_a_real_socket_gets_nanosecond_timestamps_on_this_kernel() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.bind(("127.0.0.1", 0))
        assert enable_timestamps(rx)
        tx.sendto(b"x", rx.getsockname())
        _data, ancdata, _flags, _addr = rx.recvmsg(16, 64)
        assert parse_timestamp(ancdata) is not None


class Refusing:
    def __init__(self) -> None:
        self.asked: list[int] = []

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.asked.append(option)
        raise OSError(errno.ENOPROTOOPT, "Protocol not available")


def test_a_system_that_refuses_both_layouts_gets_a_warning_not_a_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sock = Refusing()
    with caplog.at_level(logging.WARNING, logger="nkprobe.net"):
        assert enable_timestamps(sock) is False  # type: ignore[arg-type]
    assert len(sock.asked) == 2
    assert "no kernel receive timestamps" in caplog.text and "Protocol not available" in caplog.text
    assert parse_timestamp([]) is None  # what recvmsg then gives: the engine takes the read time
