import itertools
import math

import pytest

from shearc.schedules import keep_shift, lr_scale, target_fraction


def test_target_ramps_linearly_over_the_warmup():
    assert [target_fraction(s, 640, 0.2) for s in (0, 320, 640, 3200)] == pytest.approx([1.0, 0.6, 0.2, 0.2])
    assert target_fraction(0, 0, 0.3) == 0.3


def test_learning_rate_warms_up_then_decays_to_its_floor():
    cosine = [lr_scale(step, 10, 2, "cosine", 0.1) for step in range(10)]
    assert cosine[:2] == [0.5, 1.0] and cosine[2] == 1.0 and cosine[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(cosine[1:]))
    linear = [lr_scale(step, 10, 2, "linear", 0.0) for step in range(2, 10)]
    assert linear == pytest.approx([1 - i / 7 for i in range(8)])
    assert [lr_scale(step, 10, 2, "constant", 0.1) for step in (0, 5, 9)] == [0.5, 1.0, 1.0]


def test_keep_shift_is_where_a_unit_is_kept_half_the_time():
    shift = keep_shift(2 / 3, -0.1, 1.1)
    assert shift == pytest.approx(2 / 3 * math.log(0.1 / 1.1)) and shift < 0
