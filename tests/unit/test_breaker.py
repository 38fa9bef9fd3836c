"""The breaker that keeps a hung source from costing one timeout per call (services/breaker.py)."""

from __future__ import annotations

import pytest

from services.breaker import Breaker, is_timeout
from services.errors import Unavailable


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_what_counts_as_a_timeout():
    import requests
    from urllib3.exceptions import ReadTimeoutError

    assert is_timeout(TimeoutError())
    assert is_timeout(requests.exceptions.ReadTimeout("x"))
    assert is_timeout(ReadTimeoutError(None, "/x", "Read timed out. (read timeout=5)"))
    wrapped = RuntimeError("API request failed")
    wrapped.__cause__ = requests.exceptions.ConnectTimeout("x")
    assert is_timeout(wrapped)  # a cause is enough
    assert is_timeout(Exception("... (Caused by ReadTimeoutError(... Read timed out.))"))  # MLflow's wording
    assert not is_timeout(ConnectionRefusedError("refused"))
    assert not is_timeout(Exception("too many 500 error responses"))
    assert not is_timeout(None)


def test_a_timeout_rests_the_source_then_it_is_asked_again():
    clock = Clock()
    b = Breaker("MLflow registry", cooldown=15, clock=clock)
    b.check()  # closed
    with pytest.raises(TimeoutError), b.guard():
        raise TimeoutError("read timed out")
    assert b.open
    clock.now += 3
    with pytest.raises(Unavailable) as info:
        with b.guard():
            raise AssertionError("the source must not be asked while it rests")
    assert info.value.source == "MLflow registry"
    assert info.value.message == ("MLflow registry did not answer in time 3 s ago; it is not asked again for "
                                  "another 12 s")
    clock.now += 12
    with b.guard():  # rested: asked again, and a success closes it
        pass
    assert not b.open
    b.check()


def test_other_failures_leave_it_closed_and_a_success_closes_it():
    clock = Clock()
    b = Breaker("Prometheus", clock=clock)
    with pytest.raises(ConnectionRefusedError), b.guard():
        raise ConnectionRefusedError("refused")
    assert not b.open  # a refused connection answers at once: the next call should see the source come back
    b.trip("was locked by another connection for more than 5 s")
    with pytest.raises(Unavailable, match="Prometheus was locked by another connection for more than 5 s just now"):
        b.check()
    b.succeeded()
    b.check()
