"""The embedded SQLite file is switched to WAL once, so connections that open a new file
together do not fail "database is locked" (tekton_site.db.sqlite_wal)."""

from __future__ import annotations

import sqlite3
import threading

from tekton_site.db import sqlite_wal


def _mode(path) -> str:
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        con.close()


def test_a_new_file_is_made_in_wal_mode_and_an_old_one_switched(tmp_path):
    new = tmp_path / "new.sqlite3"
    sqlite_wal(new)
    assert _mode(new) == "wal"

    old = tmp_path / "old.sqlite3"
    con = sqlite3.connect(old)
    con.execute("CREATE TABLE t (x)")
    con.execute("INSERT INTO t VALUES (1)")
    con.commit()
    con.close()
    assert _mode(old) == "delete"
    sqlite_wal(old)
    assert _mode(old) == "wal"
    con = sqlite3.connect(old)
    assert con.execute("SELECT x FROM t").fetchall() == [(1,)]  # nothing lost
    con.close()


def test_connections_opening_a_new_file_at_once_all_get_in(tmp_path):
    # What two threads of a fresh install did (a request and the sweeper): each switches
    # to WAL as Django's init_command does, then writes. Without the switch made once
    # before, some of them failed "database is locked" (33 in 200 pairs here).
    errors: list[str] = []
    for n in range(40):
        path = tmp_path / f"fresh-{n}.sqlite3"
        start = threading.Barrier(4)

        def connect(path=path, start=start) -> None:
            start.wait()
            sqlite_wal(path)
            try:
                con = sqlite3.connect(path, timeout=30)
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("CREATE TABLE IF NOT EXISTS t (x)")
                con.commit()
                con.close()
            except sqlite3.Error as exc:
                errors.append(str(exc))

        threads = [threading.Thread(target=connect) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert _mode(path) == "wal"
    assert errors == []


def test_a_file_it_cannot_open_is_left_to_django_to_report(tmp_path):
    missing_dir = tmp_path / "no" / "such" / "dir" / "tekton.sqlite3"
    sqlite_wal(missing_dir)  # no exception: Django's connection says what is wrong
    assert not missing_dir.exists()
