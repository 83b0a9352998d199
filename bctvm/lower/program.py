"""VtaProgram and DramLayout: what the lowering produces, ahead of time.

DramLayout places named tensors in one flat DRAM image, each region aligned to the largest
memory-type element of the board (so every LOAD/STORE `dram_base`, counted in elements of its
memory type, is exact). Region kinds: "input", "output", "weights" (weights, biases, signs),
"feature_maps" (layer outputs that cross DRAM between programs), "uops".
A VtaProgram is one instruction stream (+ its micro-op words, stored in its own "uops" region)
over a layout; a group compiled layer by layer is several programs over one shared layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from boards import BoardConfig
from bctvm import isa
from bctvm.errors import BadInputError

KINDS = ("input", "output", "weights", "feature_maps", "uops")


@dataclass
class Region:
    name: str
    kind: str
    start: int  # byte offset in the DRAM image
    nbytes: int
    shape: tuple
    dtype: str

    @property
    def end(self) -> int:
        return self.start + self.nbytes


class DramLayout:
    """Named, aligned regions of one DRAM image."""

    def __init__(self, cfg: BoardConfig):
        self.cfg = cfg
        self.align = max(cfg.memtype_elem_bytes().values())
        self.regions: dict[str, Region] = {}
        self.size = 0

    @classmethod
    def from_regions(cls, cfg: BoardConfig, regions: dict) -> "DramLayout":
        """A layout rebuilt from stored regions {name: {"start", "nbytes", "shape", "dtype",
        "kind"}} (an artifact manifest's), so its images are read and written as compiled."""
        lay = cls(cfg)
        for name, r in regions.items():
            if r["kind"] not in KINDS:
                raise BadInputError(f"DRAM region '{name}': unknown kind '{r['kind']}'")
            reg = Region(name, r["kind"], int(r["start"]), int(r["nbytes"]),
                         tuple(int(v) for v in r["shape"]), r["dtype"])
            lay.regions[name] = reg
            lay.size = max(lay.size, reg.end)
        return lay

    def add(self, name: str, kind: str, shape, dtype: str) -> Region:
        if name in self.regions:
            raise BadInputError(f"DRAM region '{name}' defined twice")
        if kind not in KINDS:
            raise BadInputError(f"DRAM region '{name}': unknown kind '{kind}'")
        shape = tuple(int(s) for s in shape)
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        start = -(-self.size // self.align) * self.align
        reg = Region(name, kind, start, nbytes, shape, dtype)
        self.regions[name] = reg
        self.size = start + nbytes
        return reg

    def __getitem__(self, name: str) -> Region:
        return self.regions[name]

    def region_map(self) -> dict[str, tuple[int, int]]:
        """{name: (byte_start, byte_end)} for the simulator's traffic attribution."""
        return {r.name: (r.start, r.end) for r in self.regions.values()}

    def kind_of(self, name: str) -> str:
        return self.regions[name].kind

    def image(self, arrays: dict) -> np.ndarray:
        """A zeroed DRAM image with the given regions filled (arrays must match region shapes)."""
        img = np.zeros(-(-self.size // self.align) * self.align, dtype=np.uint8)
        for name, arr in arrays.items():
            self.write(img, name, arr)
        return img

    def write(self, img: np.ndarray, name: str, arr) -> None:
        reg = self.regions.get(name)
        if reg is None:
            raise BadInputError(f"no DRAM region named '{name}'")
        a = np.ascontiguousarray(np.asarray(arr, dtype=reg.dtype))
        if a.shape != reg.shape:
            raise BadInputError(f"region '{name}': expected shape {reg.shape} {reg.dtype}, got {a.shape}")
        img[reg.start:reg.end] = a.view(np.uint8).reshape(-1)

    def read(self, img: np.ndarray, name: str) -> np.ndarray:
        reg = self.regions[name]
        return img[reg.start:reg.end].view(reg.dtype).reshape(reg.shape).copy()

    def bytes_by_kind(self, per_region: dict) -> dict[str, int]:
        """Sum a {region name: bytes} dict into {kind: bytes}."""
        out = {k: 0 for k in KINDS}
        for name, b in per_region.items():
            if name in self.regions:
                out[self.regions[name].kind] += int(b)
        return out


@dataclass
class VtaProgram:
    """One ahead-of-time VTA program: instructions, micro-op words, and where its tensors are."""

    name: str
    board: str
    instructions: list
    uops: np.ndarray  # uint32 micro-op words, the content of region `uop_region`
    uop_region: str
    layout: DramLayout
    params: dict  # TIR parameter name -> DRAM region name
    layers: list
    stats: dict = field(default_factory=dict)

    def encode(self, cfg: BoardConfig) -> bytes:
        """The `.bin` instruction stream (16 bytes per instruction)."""
        return isa.encode_program(self.instructions, cfg)

    def static_arrays(self) -> dict:
        """DRAM content the program brings itself (its micro-ops)."""
        return {self.uop_region: self.uops}
