from __future__ import annotations

import time

import pytest

from syschecks.registry import CheckContext, CheckResult, Registry, check_execute


def test_register_keeps_order_and_metadata():
    reg = Registry()

    @reg.register(id="b.first", title="First", category="alpha")
    def first(ctx):
        return CheckResult(detail="one")

    @reg.register(id="a.second", title="Second", category="beta")
    def second(ctx):
        return CheckResult(detail="two")

    assert [c.id for c in reg.checks()] == ["b.first", "a.second"]
    assert reg.get("a.second").title == "Second"
    assert reg.get("a.second").category == "beta"


def test_register_rejects_a_second_function_under_the_same_id():
    reg = Registry()

    @reg.register(id="dup", title="Dup", category="x")
    def one(ctx):
        return CheckResult()

    with pytest.raises(ValueError, match="'dup' is already registered by .*one"):

        @reg.register(id="dup", title="Dup", category="x")
        def two(ctx):
            return CheckResult()


def test_register_rejects_blank_or_spaced_ids():
    reg = Registry()
    with pytest.raises(ValueError, match="non-empty word"):
        reg.register(id="has space", title="t", category="c")
    with pytest.raises(ValueError, match="non-empty word"):
        reg.register(id="", title="t", category="c")


def test_select_by_id_or_category_and_unknown_names_are_named():
    reg = Registry()
    for cid, cat in [("p.one", "providers"), ("p.two", "providers"), ("db", "database")]:
        reg.register(id=cid, title=cid, category=cat)(lambda ctx: CheckResult())
    assert [c.id for c in reg.select(["providers"])] == ["p.one", "p.two"]
    assert [c.id for c in reg.select(["db", "p.two"])] == ["p.two", "db"]
    with pytest.raises(ValueError) as info:
        reg.select(["db", "nope", "zzz"])
    message = str(info.value)
    assert "'nope'" in message and "'zzz'" in message
    assert "p.one, p.two, db" in message


def test_check_result_rejects_unknown_status():
    with pytest.raises(ValueError, match="one of"):
        CheckResult(status="fine")


def test_execute_fills_blank_id_title_category_and_duration():
    reg = Registry()

    @reg.register(id="multi", title="Multi", category="cat")
    def multi(ctx):
        time.sleep(0.02)
        return [
            CheckResult(detail=f"paths {','.join(ctx.repo_paths)}"),
            CheckResult(id="multi:sub", title="Sub", status="warn", detail="d", hint="h"),
        ]

    results = check_execute(reg.get("multi"), CheckContext(repo_paths=("/a", "/b")))
    assert [(r.id, r.title, r.category, r.status) for r in results] == [
        ("multi", "Multi", "cat", "ok"),
        ("multi:sub", "Sub", "cat", "warn"),
    ]
    assert results[0].detail == "paths /a,/b"
    assert all(20 <= r.duration_ms < 2000 for r in results)
    assert results[1].as_dict()["hint"] == "h"


def test_exception_in_a_check_becomes_one_redacted_error_line():
    reg = Registry()
    secret = "sk-ant-api03-ZYXWVUTSRQPONMLKJIHGFEDCBA"

    @reg.register(id="boom", title="Boom", category="x")
    def boom(ctx):
        raise ConnectionError(f"login failed with {secret}\n  File 'x.py', line 3, in boom")

    (result,) = check_execute(reg.get("boom"), CheckContext())
    assert result.status == "error"
    assert result.id == "boom"
    assert "ConnectionError: login failed with [API_KEY#1]" in result.detail
    assert secret not in repr(result)
    assert "File 'x.py'" not in result.detail and "Traceback" not in result.detail
    assert result.hint


def test_a_check_returning_the_wrong_type_is_an_error_result():
    reg = Registry()
    reg.register(id="bad", title="Bad", category="x")(lambda ctx: ["not a result"])
    (result,) = check_execute(reg.get("bad"), CheckContext())
    assert result.status == "error"
    assert "returned str, expected CheckResult" in result.detail


def test_a_check_returning_none_has_no_results():
    reg = Registry()
    reg.register(id="quiet", title="Quiet", category="x")(lambda ctx: None)
    assert check_execute(reg.get("quiet"), CheckContext()) == []


def test_details_and_hints_are_redacted():
    reg = Registry()
    reg.register(id="leaky", title="Leaky", category="x")(
        lambda ctx: CheckResult(
            status="warn", detail="token=abcdef123456", hint="mail ops@example.com"
        )
    )
    (result,) = check_execute(reg.get("leaky"), CheckContext())
    assert "abcdef123456" not in result.detail
    assert "ops@example.com" not in result.hint
