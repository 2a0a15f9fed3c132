"""Engine choice against probe results (the probing itself runs in the integration tier)."""

import pytest

from testbed.engine import FEATURES, choose
from testbed.run import TestbedError

ALL = {f: True for f in FEATURES}


def test_a_capable_local_engine_is_used():
    kind, why = choose({}, lambda: ALL)
    assert kind == "local" and "has" in why


def test_no_engine_means_the_vm():
    kind, why = choose({}, lambda: None)
    assert kind == "vm" and "no Docker engine" in why


def test_an_engine_without_privilege_means_the_vm():
    kind, why = choose({"DOCKER_HOST": "tcp://x:2375"}, lambda: "unable to apply caps")
    assert kind == "vm" and "privileged" in why and "tcp://x:2375" in why


@pytest.mark.parametrize("missing", FEATURES)
def test_a_kernel_missing_any_feature_means_the_vm(missing):
    kind, why = choose({}, lambda: {**ALL, missing: False})
    assert kind == "vm" and missing in why


def test_forcing_skips_the_probe():
    def boom():
        raise AssertionError("probed although forced")
    assert choose({"TESTBED_ENGINE": "vm"}, boom)[0] == "vm"
    assert choose({"TESTBED_ENGINE": "local"}, boom)[0] == "local"


def test_a_bad_forced_value_is_an_error():
    with pytest.raises(TestbedError, match="local or vm"):
        choose({"TESTBED_ENGINE": "kvm"}, lambda: ALL)
