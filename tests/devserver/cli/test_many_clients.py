"""A real ``devserver serve --threads 600`` under 300 clients at once: nothing crashes.

Before: each request thread kept a SQLite connection of its own and the I/O
loop used ``select()``, which cannot watch a descriptor numbered 1024 or
more, so the server died within seconds. Now the store has a bounded pool of
connections and the server's event loop uses epoll.
"""

from __future__ import annotations

import http.client
import os
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ..faults import AUTH, Served, server_env

CLIENTS = 300
REQUESTS_EACH = 4


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_600_threads_and_300_clients_get_every_answer(tmp_path: Path) -> None:
    env = server_env(tmp_path / "data", tmp_path / "tmp")
    with Served(env, args=("--threads", "600")) as server:
        run_ids = []
        for n in range(2):
            status, answer = server.post_run({"config": "dada", "input": f"Hund {n}"}, wait=True)
            assert status == 200, answer
            run_ids.append(answer["run_id"])
        parts = urlsplit(server.base)
        start = threading.Barrier(CLIENTS)
        statuses: list[int] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def client(index: int) -> None:
            conn = http.client.HTTPConnection(str(parts.hostname), parts.port, timeout=120)
            try:
                start.wait(60)
                for n in range(REQUESTS_EACH):
                    run_id = run_ids[(index + n) % len(run_ids)]
                    path = f"/api/runs/{run_id}" if n % 2 == 0 else "/api/stats"
                    conn.request("GET", path, headers=AUTH)
                    response = conn.getresponse()
                    response.read()
                    with lock:
                        statuses.append(response.status)
            except BaseException as exc:  # collected: the assertion below names it
                with lock:
                    errors.append(exc)
            finally:
                conn.close()

        threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(150)
        assert not errors, errors[:3]
        assert len(statuses) == CLIENTS * REQUESTS_EACH
        assert set(statuses) == {200}
        # The store holds its pool's connections, not one per request thread.
        database = [
            target for target in open_files(server.process.pid) if "history.sqlite3" in target
        ]
        assert len(database) <= 3 * 8 + 2, len(database)
        assert server.process.poll() is None  # alive
        status, answer = server.post_run({"config": "dada", "input": "danach"}, wait=True)
        assert status == 200 and answer["status"] == "success"
        assert server.stop() == 0


def open_files(pid: int) -> list[str]:
    """What the descriptors of process ``pid`` point at (one closed meanwhile is skipped:
    the server closes connections while the list is read)."""
    targets = []
    for descriptor in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{descriptor}"))
        except FileNotFoundError:
            continue
    return targets
