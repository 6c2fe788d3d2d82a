"""The safety filter: no action leaves the limits, whatever the policy asks for."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from real.safety import DEFAULT_SAFETY, SafetyConfig, SafetyError, SafetyFilter
from robo_reward.embodiments.so101.kinematics import JOINT_NAMES, TopDownIK

CFG = SafetyConfig.load(DEFAULT_SAFETY)
FILTER = SafetyFilter(CFG, TopDownIK.from_assets().model)
LOW, HIGH, STEP = FILTER.low, FILTER.high, FILTER.step
HOME = np.array([6.35, -15.73, 10.12, 95.0, 99.14, 100.0])

wild = st.floats(-1e4, 1e4, allow_nan=False)


@st.composite
def measured_inside(draw):
    """A measured pose within the joint limits whose TCP is in the workspace box."""
    for _ in range(50):
        off = np.array([draw(st.floats(-25, 25)) for _ in range(5)] + [draw(st.floats(-100, 0))])
        q = np.clip(HOME + off, LOW, HIGH)
        if FILTER._outside(FILTER.tcp(q)) == 0:
            return q
    return HOME


@settings(max_examples=150, deadline=None)
@given(measured_inside(), st.lists(wild, min_size=6, max_size=6))
def test_no_action_leaves_the_limits(measured, target):
    out = FILTER.filter(np.array(target), measured)
    assert np.all(out >= LOW - 1e-9) and np.all(out <= HIGH + 1e-9)
    assert np.all(np.abs(out - measured) <= STEP + 1e-9)
    assert FILTER._outside(FILTER.tcp(out)) == 0.0


@settings(max_examples=60, deadline=None)
@given(measured_inside())
def test_a_safe_action_passes_unchanged(measured):
    target = measured + np.array([0.5, -0.5, 0.5, -0.5, 0.5, -1.0])
    target = np.clip(target, LOW, HIGH)
    if FILTER._outside(FILTER.tcp(target)) > 0:
        return
    np.testing.assert_allclose(FILTER.filter(target, measured), target)


def test_clips_are_counted_and_nan_refused():
    f = SafetyFilter(CFG, FILTER.model)
    f.filter(HOME + np.array([200.0, 0, 0, 0, 0, 0]), HOME)  # past the limit and the max step
    f.filter(HOME, HOME)
    rep = f.report()
    assert rep["actions"] == 2 and rep["joint_limit"] == 1 and rep["max_step"] == 1
    with pytest.raises(SafetyError, match="finite"):
        f.filter(np.full(6, np.nan), HOME)
    f.throttle()
    f.throttle()  # back to back: slowed to max_rate_hz
    assert f.report()["rate_limit"] == 1


def test_workspace_box_stops_a_dive_into_the_table():
    # from just above the table, one more step down would put the TCP 4 cm into it: the move is
    # cut where the TCP meets the box (z=0), not refused altogether
    down = np.array([0.0, 19.0, 19.0, -19.0, 0.0, 0.0])
    measured, target = HOME + down, HOME + 2 * down
    assert 0 < FILTER.tcp(measured)[2] < 0.02 and FILTER.tcp(target)[2] < -0.03
    out = FILTER.filter(target, measured)
    assert FILTER._outside(FILTER.tcp(out)) == 0.0 and FILTER.tcp(out)[2] < 0.001
    assert 0 < np.abs(out - measured).max() < 19.0


def test_bad_safety_yaml_names_the_field(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text(DEFAULT_SAFETY.read_text().replace("max_rate_hz: 60.0", "max_rate_hz: -1"))
    with pytest.raises(ValueError, match="max_rate_hz: -1"):
        SafetyConfig.load(bad)
    bad.write_text(DEFAULT_SAFETY.read_text().replace("  gripper: [0.0, 100.0]\n", ""))
    with pytest.raises(ValueError, match=r"joint_limits: missing \['gripper'\]"):
        SafetyConfig.load(bad)
    with pytest.raises(FileNotFoundError, match="safety config not found"):
        SafetyConfig.load(tmp_path / "nope.yaml")
    assert list(CFG.joint_limits) == list(JOINT_NAMES)
