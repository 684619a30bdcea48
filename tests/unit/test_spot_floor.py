"""The rule that chooses the localiser's spot floor (training/spot_floor_study.py)."""

from __future__ import annotations

from training.spot_floor_study import BEFORE, FloorResult, choose


def result(
    floor: float,
    clean: int,
    not_a_lesion: int = 168,
    boxes: float = 0.93,
) -> FloorResult:
    return FloorResult(
        floor=floor,
        clean_refused={"real_phone": (clean, 119), "clinical": (clean, 799)},
        guard_refused={"not_a_lesion": (not_a_lesion, 173), "defocus": (119, 119)},
        good_boxes={"dermoscopy": boxes},
        advisory=(),
    )


def test_the_fewest_clean_refusals_win() -> None:
    chosen = choose([result(BEFORE, 8), result(4.0, 6), result(3.5, 5)])
    assert chosen.floor == 3.5


def test_a_floor_that_lets_through_more_than_a_guard_budget_is_not_eligible() -> None:
    # The guard's budget is 1 % of 173 photos: one photo.
    chosen = choose([result(BEFORE, 8), result(4.0, 6, not_a_lesion=167), result(3.5, 4, 166)])
    assert chosen.floor == 4.0


def test_a_floor_that_loses_good_boxes_is_not_eligible() -> None:
    chosen = choose([result(BEFORE, 8), result(4.0, 6), result(3.5, 4, boxes=0.91)])
    assert chosen.floor == 4.0


def test_ties_go_to_the_higher_floor() -> None:
    assert choose([result(BEFORE, 8), result(4.0, 6), result(3.5, 6)]).floor == 4.0
    assert choose([result(BEFORE, 6), result(3.5, 6)]).floor == BEFORE
