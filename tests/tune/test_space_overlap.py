"""The tuner's space carries the loop order and weight buffering knobs: `blocks_inside` for
groups over several blocks (also of several layers) and `weight_copies`; a sample of them
becomes the ScheduleKnobs the compile uses, the fit rule accepts the ones that fit, and the
default knobs' record reads them back."""

from __future__ import annotations

from boards import load_board
from bctvm.tune.space import KnobSpace
from schedules import LayerSpec

ZCU = load_board("zcu102")


def _specs(grid: int):
    ch = 8 * ZCU.block_out
    return [LayerSpec(n, ch, ch, 4 * grid, 4 * grid, (4, 4), shift=12, relu=True)
            for n in ("a", "b")]


def test_several_layers_over_blocks_sample_the_loop_order():
    space = KnobSpace(ZCU, _specs(2), [None, None])
    assert space.by_name["blocks_inside"].values == (False, True)
    assert space.by_name["weight_copies"].values == (2, 1)
    asked = {**_defaults(space), "blocks_inside": True, "weights_resident": False,
             "l0.oc_chunk": 1, "l1.oc_chunk": 1}
    values = space.from_knobs(space.resolved(asked))
    assert values == asked
    assert values["blocks_inside"] is True and values["weight_copies"] == 2
    knobs, _ = space.to_knobs({**values, "weight_copies": 1, "vthreads": 1})
    assert knobs.blocks_inside and knobs.wgt_copies == 1
    assert space.check({**values, "weight_copies": 1, "vthreads": 1}) is None


def test_one_block_has_no_loop_order_knob():
    space = KnobSpace(ZCU, _specs(1), [None, None])
    assert "blocks_inside" not in space.by_name and "weight_copies" in space.by_name


def _defaults(space):
    """Whole tiles, no row sub-tiles, the first value of every other choice."""
    return {k.name: (k.values[-1] if k.kind == "tile" or k.name.endswith("sub_rows")
                     else k.values[0]) for k in space.knobs}
