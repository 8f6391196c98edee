"""LISTEN/NOTIFY for the live feed across processes, against a real PostgreSQL server.

The server is a cluster of this test module's own (it is restarted, which the
session's shared cluster must not be).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from devserver.live._notify import RunListener, RunNotifier, parse_payload
from execution_history import new_run_id
from tests.devserver.faults import wait_until
from tests.pg_cluster import Cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    started = Cluster().start()
    yield started
    started.stop()


class Woken:
    """What a listener woke: run ids, and how often it woke everything."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.all = 0
        self.lock = threading.Lock()

    def wake(self, run_id: str) -> None:
        with self.lock:
            self.runs.append(run_id)

    def wake_all(self) -> None:
        with self.lock:
            self.all += 1


def test_a_notification_wakes_the_run_and_both_sides_survive_a_database_restart(
    cluster: Cluster,
) -> None:
    url = cluster.url()
    woken = Woken()
    listener = RunListener(url, woken.wake, woken.wake_all)
    notifier = RunNotifier(url)
    try:
        assert listener.connected.wait(30)
        assert woken.all == 1  # connecting wakes every feed: nothing sent before is known
        first, second = new_run_id(), new_run_id()
        notifier([(first, 3), (second, 7)])
        wait_until(lambda: {first, second} <= set(woken.runs), 10, "no wake-up arrived")
        assert notifier.sent == 2 and notifier.failures == 0

        cluster.restart()  # every connection is cut
        wait_until(lambda: listener.reconnections >= 1, 30, "the listener did not reconnect")
        assert woken.all == 2  # and woke every feed again
        # The notifier's connection died with the server: the first send after the restart
        # fails (counted, not raised); the next one reconnects.
        third = new_run_id()

        def sent_again() -> bool:
            notifier([(third, 1)])
            return third in woken.runs

        wait_until(sent_again, 30, "no notification after the restart", interval=0.2)
        assert notifier.failures >= 1
    finally:
        listener.close()
        notifier.close()


def test_a_notifier_without_a_database_counts_and_never_raises(tmp_path: object) -> None:
    notifier = RunNotifier(f"postgresql://postgres@/none?host={tmp_path}&port=1")
    notifier([(new_run_id(), 1)])
    notifier([(new_run_id(), 2)])
    assert notifier.failures == 2 and notifier.sent == 0
    notifier.close()


def test_a_payload_that_is_not_a_run_and_sequence_wakes_nothing(cluster: Cluster) -> None:
    import psycopg

    url = cluster.url()
    woken = Woken()
    listener = RunListener(url, woken.wake, woken.wake_all)
    try:
        assert listener.connected.wait(30)
        run_id = new_run_id()
        with psycopg.connect(url, autocommit=True) as conn:
            for payload in ("", "x:1", f"{run_id}:", f"{run_id}:-1", "../../etc:1"):
                conn.execute("SELECT pg_notify('devserver_run_items', %s)", (payload,))
            conn.execute("SELECT pg_notify('devserver_run_items', %s)", (f"{run_id}:9",))
        wait_until(lambda: woken.runs, 10, "the valid notification never arrived")
        assert woken.runs == [run_id]
    finally:
        listener.close()


@given(st.text(max_size=80) | st.builds(lambda d: f"{'a' * 32}:{d}", st.text(max_size=20)))
@example(f"{'a' * 32}:²")
@example(f"{'a' * 32}:٣")
def test_parse_payload_takes_only_a_run_id_and_a_sequence(payload: str) -> None:
    parsed = parse_payload(payload)
    if parsed is not None:
        run_id, sequence = parsed
        assert payload == f"{run_id}:{sequence}" and sequence >= 0


def test_parse_payload_reads_what_the_notifier_sends() -> None:
    run_id = new_run_id()
    assert parse_payload(f"{run_id}:42") == (run_id, 42)
