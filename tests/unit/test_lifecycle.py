"""The testbed's lifecycle, in order, on testbeds that only write down what was asked of them."""

import pytest

from testbed.lifecycle import Lifecycle


class Testbed:
    __test__ = False

    def __init__(self, name, calls, fail=None):
        self.prefix, self.calls, self.fail = name, calls, fail

    def step(self, what):
        self.calls.append(f"{what} {self.prefix}")
        if what == self.fail:
            raise RuntimeError(f"{what} failed")

    def create(self):
        self.step("create")

    def converge(self):
        self.step("converge")

    def verify(self):
        self.step("verify")

    def destroy(self):
        self.step("destroy")
        return {"md": []}


def test_destroy_first_record_create_converge_verify_then_down():
    calls = []
    tb = Testbed("new", calls)
    life = Lifecycle(tb, first=[Testbed("old", calls)], record=lambda: calls.append("record"))
    assert life.up() is tb
    assert life.down() == {"md": []}
    assert calls == ["destroy old", "record", "create new", "converge new", "verify new", "destroy new"]


def test_nothing_first_nothing_recorded():
    calls = []
    Lifecycle(Testbed("tb", calls)).up()
    assert calls == ["create tb", "converge tb", "verify tb"]


@pytest.mark.parametrize("step", ["create", "converge", "verify"])
def test_a_failed_step_is_said_destroyed_once_and_raised(step):
    calls = []
    life = Lifecycle(Testbed("tb", calls, fail=step), failed=lambda tb: calls.append(f"failed {tb.prefix}"))
    with pytest.raises(RuntimeError, match=f"{step} failed"):
        life.up()
    assert calls[-2:] == ["failed tb", "destroy tb"]
    assert life.down() == {"md": []} and calls.count("destroy tb") == 1     # a `finally: down()`


def test_down_destroys_once():
    calls = []
    life = Lifecycle(Testbed("tb", calls))
    life.down()
    life.down()
    assert calls == ["destroy tb"]
