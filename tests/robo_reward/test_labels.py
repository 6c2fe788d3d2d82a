import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from robo_reward.data.labels import (
    AnnotationError,
    Segments,
    episode_progress,
    progress_from_stage,
    temporal_proportions,
)

STAGES = ("reach", "grasp", "lift")


@st.composite
def segmentations(draw):
    n = len(STAGES)
    lens = draw(st.lists(st.integers(2, 30), min_size=n, max_size=n))  # tau reaches 1 in 2+ frames
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    ends = np.cumsum(lens) - 1
    return Segments(STAGES, tuple(int(x) for x in starts), tuple(int(x) for x in ends)), int(sum(lens))


@given(st.lists(segmentations(), min_size=1, max_size=6))
def test_temporal_proportions_are_mean_shares(episodes):
    props = temporal_proportions([s for s, _ in episodes], STAGES)
    assert abs(sum(props.values()) - 1.0) < 1e-9
    expected = np.mean([[(e - s + 1) / n for s, e in zip(seg.starts, seg.ends, strict=True)] for seg, n in episodes], axis=0)
    np.testing.assert_allclose(list(props.values()), expected, atol=1e-9)


@given(segmentations())
def test_progress_is_monotone_and_spans_zero_to_one(seg_len):
    seg, n = seg_len
    props = temporal_proportions([seg], STAGES)
    stage, tau, prog = episode_progress(n, seg, STAGES, list(props.values()))
    assert np.all(np.diff(prog) >= -1e-12)
    assert prog[0] == pytest.approx(0.0)
    assert prog[-1] == pytest.approx(1.0)
    # P_{k-1} + a_k * tau at each segment's first frame equals the cumulative share
    cum = np.concatenate([[0], np.cumsum(list(props.values()))])
    for k, s in enumerate(seg.starts):
        assert prog[s] == pytest.approx(cum[k])


def test_progress_formula_by_hand():
    assert progress_from_stage(1, 0.5, [0.2, 0.4, 0.4]) == pytest.approx(0.2 + 0.4 * 0.5)
    assert progress_from_stage(2, 1.0, [0.2, 0.4, 0.4]) == pytest.approx(1.0)


def test_no_annotations_falls_back_to_linear():
    stage, tau, prog = episode_progress(11, None, ("task",), [1.0])
    np.testing.assert_allclose(prog, np.linspace(0, 1, 11))
    assert (stage == 0).all()


def test_segments_from_stage_per_frame_is_monotone():
    seg = Segments.from_stage_per_frame(STAGES, [0, 0, 1, 1, 0, 1, 2, 2])
    assert seg == Segments(STAGES, (0, 2, 6), (1, 5, 7))


def test_segments_from_stage_per_frame_skip_frames_before_the_task():
    """-1 marks frames before the task starts (a wandering prefix): no segment covers them, so
    their progress reads 0, and a labelling with no stage at all is an error."""
    seg = Segments.from_stage_per_frame(STAGES, [-1, -1, -1, 0, 0, 1, 2, 2])
    assert seg == Segments(STAGES, (3, 5, 6), (4, 5, 7))
    _, _, prog = episode_progress(8, seg, STAGES, (0.3, 0.3, 0.4))
    assert prog[:4].tolist() == [0.0] * 4 and prog[-1] == pytest.approx(1.0)
    with pytest.raises(AnnotationError, match="no frame is in a stage"):
        Segments.from_stage_per_frame(STAGES, [-1, -1])


@pytest.mark.parametrize(("starts", "ends", "match"), [
    ((0, 5, 9), (5, 9, 12), "overlapping segment 0 'reach' which ends at frame 5"),
    ((0, 5, 9), (4, 8, 20), r"spans frames \[9, 20\]; expected 0 <= start <= end <= 11"),
    ((0, 5, 3), (4, 2, 8), r"spans frames \[5, 2\]"),
])
def test_bad_segments_raise(starts, ends, match):
    with pytest.raises(AnnotationError, match=match):
        Segments(STAGES, starts, ends).validate(12)
