"""The test suite's own helpers that decide what a failed run leaves behind (conftest.kept_for_a_look):
a wrong answer here either throws away hours of a stacked machine or leaves labs on CI's host."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Literal

import pytest

from conftest import CALL_REPORT, kept_for_a_look


def request_after(outcome: Literal["passed", "failed", "skipped"] | None) -> pytest.FixtureRequest:
    node = SimpleNamespace(stash=pytest.Stash())
    if outcome is not None:
        node.stash[CALL_REPORT] = pytest.TestReport("t.py::t", ("t.py", 1, "t"), {}, outcome, None, "call")
    return SimpleNamespace(node=node)  # type: ignore[return-value]


def test_a_failed_test_keeps_its_lab_only_when_asked(monkeypatch: pytest.MonkeyPatch,
                                                      capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("LABCTL_TEST_KEEP", raising=False)
    assert not kept_for_a_look(request_after("failed"), "lab-a")  # CI: everything goes
    monkeypatch.setenv("LABCTL_TEST_KEEP", "1")
    assert not kept_for_a_look(request_after("passed"), "lab-a")
    assert not kept_for_a_look(request_after("skipped"), "lab-a")
    assert not kept_for_a_look(request_after(None), "lab-a")  # failed in its setup: no lab to look at
    capfd.readouterr()
    monkeypatch.setenv("LABCTL_HOME", "/tmp/somewhere/labctl-home")
    assert kept_for_a_look(request_after("failed"), "lab-a")
    said = capfd.readouterr().err
    assert "lab lab-a kept" in said
    assert "LABCTL_HOME=/tmp/somewhere/labctl-home " in said and "labctl destroy -y --lab lab-a`" in said
