"""bctvm's VTA simulator: exact functional semantics, token-ordered modules, cycle model.

    from bctvm.sim import Simulator, SimResult
    res = Simulator(cfg).run(program, dram, regions=None, max_cycles=None)

See bctvm/sim/simulator.py for the API, docs/cycle-model.md for the cycle model.
Package layout: program_table (decode/validate streams), scheduler (modules, tokens,
event order), dma (LOAD/STORE), gemm, alu, uop_loop, sram (buffers), traffic (counters),
timing (cycle costs).
"""

from bctvm.sim.errors import CycleLimitError
from bctvm.sim.simulator import SimResult, Simulator

__all__ = ["Simulator", "SimResult", "CycleLimitError"]
