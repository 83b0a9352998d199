"""Program files and the DRAM image builder.

Two plain files make a VTA program, both writable by hand:

- the instruction stream (`PROG.bin`): raw 16-byte little-endian instructions, back to back
  (bctvm.isa.encode_program / decode_program);
- the DRAM image (`IMAGE.bin`): one flat byte file. A `dram_base` of element index i of a
  memory type addresses byte i x (that type's element bytes), as on VTA where DRAM addresses
  are physical addresses divided by the element size. Micro-ops are little-endian uint32
  words (4 bytes), input/output tiles int8 [BATCH, BLOCK_IN|OUT], weight tiles int8
  [BLOCK_OUT, BLOCK_IN], accumulator tiles int32 [BATCH, BLOCK_OUT], all row-major.

`DramImage` lays out named, element-aligned regions, writes and reads tiles, and hands out
the `dram_base` to put in instructions plus the region map {name: (byte_start, byte_end)}
the simulator uses to attribute DRAM traffic. An optional side file `IMAGE.regions.json`
stores that map next to an image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from boards import BoardConfig
from bctvm.errors import BctvmError, ProgramFormatError
from bctvm.jsonfile import read_json_object
from bctvm.isa import Uop, decode, encode_program, encode_uops

# Memory-type names of a DRAM region -> (BoardConfig element-bytes property, numpy dtype,
# tile shape function). "acc8" is the int8 residual operand of LOAD ACC_8BIT; "out" the
# destination of STORE.
KINDS = ("uop", "wgt", "inp", "acc", "out", "acc8")

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"


def tile_shape(kind: str, cfg: BoardConfig) -> tuple[int, ...]:
    """Shape of one element of a memory type: () for a micro-op word, else the tile shape."""
    if kind == "uop":
        return ()
    if kind == "wgt":
        return (cfg.block_out, cfg.block_in)
    if kind == "inp":
        return (cfg.batch, cfg.block_in)
    if kind in ("acc", "out", "acc8"):
        return (cfg.batch, cfg.block_out)
    raise ProgramFormatError(f"unknown memory kind '{kind}' (known: {', '.join(KINDS)})")


def tile_dtype(kind: str) -> np.dtype:
    """numpy dtype of one element's values in DRAM (little-endian)."""
    if kind == "uop":
        return np.dtype("<u4")
    if kind == "acc":
        return np.dtype("<i4")
    if kind in KINDS:
        return np.dtype("i1")
    raise ProgramFormatError(f"unknown memory kind '{kind}' (known: {', '.join(KINDS)})")


@dataclass(frozen=True)
class Region:
    """A named run of `n_elems` elements of one memory kind, starting at `byte_start`."""

    name: str
    kind: str
    byte_start: int
    n_elems: int
    elem_bytes: int

    @property
    def byte_end(self) -> int:
        return self.byte_start + self.n_elems * self.elem_bytes

    @property
    def dram_base(self) -> int:
        """Element index of the first element (the `dram_base` of a LOAD/STORE)."""
        return self.byte_start // self.elem_bytes

    def elem(self, i: int) -> int:
        """`dram_base` of element i of this region."""
        if not 0 <= i < self.n_elems:
            raise IndexError(f"region '{self.name}': element {i} outside 0..{self.n_elems - 1}")
        return self.dram_base + i


class DramImage:
    """Builder of a flat DRAM image made of named, element-aligned regions.

    Regions are placed one after the other, each aligned to its element size (and to
    `align` bytes, default the bus width), never overlapping. Writes take arrays shaped
    [n, *tile_shape(kind)] (micro-ops: a list of Uop or uint32 words).
    """

    def __init__(self, cfg: BoardConfig, align: int | None = None):
        self.cfg = cfg
        self.align = align or cfg.bus_bytes
        self._regions: dict[str, Region] = {}
        self._data = bytearray()

    # ---- layout ---------------------------------------------------------------------------
    def alloc(self, name: str, kind: str, n_elems: int) -> Region:
        """Reserve a zero-filled region of n_elems elements of `kind`; returns it."""
        if name in self._regions:
            raise ProgramFormatError(f"DRAM region '{name}' allocated twice")
        if n_elems < 1:
            raise ProgramFormatError(f"DRAM region '{name}': needs at least one element, got {n_elems}")
        if kind not in KINDS:
            raise ProgramFormatError(f"DRAM region '{name}': unknown memory kind '{kind}' (known: {', '.join(KINDS)})")
        elem = self.cfg.memtype_elem_bytes()[kind]
        step = int(np.lcm(elem, self.align))
        start = -(-len(self._data) // step) * step
        region = Region(name, kind, start, int(n_elems), elem)
        self._data.extend(bytes(region.byte_end - len(self._data)))
        self._regions[name] = region
        return region

    def region(self, name: str) -> Region:
        try:
            return self._regions[name]
        except KeyError:
            raise ProgramFormatError(
                f"no DRAM region '{name}' (have: {', '.join(self._regions) or 'none'})"
            ) from None

    @property
    def regions(self) -> dict[str, tuple[int, int]]:
        """{name: (byte_start, byte_end)} for the simulator's traffic attribution."""
        return {r.name: (r.byte_start, r.byte_end) for r in self._regions.values()}

    @property
    def nbytes(self) -> int:
        return len(self._data)

    def to_array(self) -> np.ndarray:
        """The image as a fresh 1-D np.uint8 array."""
        return np.frombuffer(bytes(self._data), dtype=np.uint8).copy()

    # ---- writes ---------------------------------------------------------------------------
    def _coerce(self, kind: str, values) -> np.ndarray:
        if kind == "uop":
            if len(values) and isinstance(values[0], Uop):
                values = encode_uops(values, self.cfg)
            arr = np.asarray(values)
            if arr.ndim != 1:
                raise ProgramFormatError(f"micro-ops: expected a 1-D list of words, got shape {arr.shape}")
            if arr.size and (arr.min() < 0 or arr.max() > 0xFFFFFFFF):
                raise ProgramFormatError("micro-op words must fit 32 bits")
            return arr.astype("<u4")
        shape, dtype = tile_shape(kind, self.cfg), tile_dtype(kind)
        arr = np.asarray(values)
        if arr.ndim != 1 + len(shape) or tuple(arr.shape[1:]) != shape:
            raise ProgramFormatError(
                f"{kind} tiles: expected shape [n, {', '.join(map(str, shape))}], got {list(arr.shape)}"
            )
        info = np.iinfo(dtype)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise ProgramFormatError(f"{kind} tiles: values outside {dtype.name} [{info.min}, {info.max}]")
        return arr.astype(dtype)

    def write(self, name: str, values, offset: int = 0) -> Region:
        """Write elements into region `name` starting at its element `offset`."""
        region = self.region(name)
        arr = self._coerce(region.kind, values)
        n = arr.shape[0]
        if offset < 0 or offset + n > region.n_elems:
            raise ProgramFormatError(
                f"DRAM region '{name}': writing elements {offset}..{offset + n - 1} "
                f"outside 0..{region.n_elems - 1}"
            )
        start = region.byte_start + offset * region.elem_bytes
        raw = arr.tobytes()
        self._data[start:start + len(raw)] = raw
        return region

    def put(self, name: str, kind: str, values) -> Region:
        """Allocate a region sized to `values` and write them; returns the region."""
        n = len(values)
        self.alloc(name, kind, n)
        return self.write(name, values)

    def put_inp(self, name: str, tiles) -> Region:
        """int8 input tiles [n, BATCH, BLOCK_IN] (e.g. NCHW1n16c in (c-block, h, w) order)."""
        return self.put(name, "inp", tiles)

    def put_wgt(self, name: str, tiles) -> Region:
        """int8 weight tiles [n, BLOCK_OUT, BLOCK_IN] (OIHW16o16i in (o, i, h, w) order)."""
        return self.put(name, "wgt", tiles)

    def put_acc(self, name: str, tiles) -> Region:
        """int32 accumulator tiles [n, BATCH, BLOCK_OUT] (e.g. a bias)."""
        return self.put(name, "acc", tiles)

    def put_acc8(self, name: str, tiles) -> Region:
        """int8 tiles [n, BATCH, BLOCK_OUT] for LOAD ACC_8BIT (a residual operand)."""
        return self.put(name, "acc8", tiles)

    def put_uops(self, name: str, uops) -> Region:
        """Micro-ops (Uop records or encoded uint32 words) for LOAD UOP."""
        return self.put(name, "uop", uops)

    def alloc_out(self, name: str, n_tiles: int) -> Region:
        """Zeroed destination of STORE: n int8 tiles [BATCH, BLOCK_OUT]."""
        return self.alloc(name, "out", n_tiles)

    # ---- reads ----------------------------------------------------------------------------
    def read(self, name: str, dram: np.ndarray | None = None) -> np.ndarray:
        """Elements of region `name`, shaped [n, *tile], from `dram` (default: this image)."""
        region = self.region(name)
        data = np.asarray(dram if dram is not None else self.to_array(), dtype=np.uint8)
        if data.ndim != 1 or data.size < region.byte_end:
            raise ProgramFormatError(
                f"DRAM image of {data.size} bytes does not hold region '{name}' "
                f"(bytes {region.byte_start}..{region.byte_end})"
            )
        raw = data[region.byte_start:region.byte_end]
        arr = raw.view(tile_dtype(region.kind))
        return arr.reshape((region.n_elems,) + tile_shape(region.kind, self.cfg)).copy()


# ---- packed tensor layouts <-> tiles --------------------------------------------------------


def nchw_to_tiles(x: np.ndarray, batch: int, block: int) -> np.ndarray:
    """NCHW -> tiles [(n/batch, c/block, h, w), batch, block] (VTA's NCHWxnXc, tile order)."""
    n, c, h, w = x.shape
    if n % batch or c % block:
        raise ProgramFormatError(f"NCHW {list(x.shape)}: N must be a multiple of {batch}, C of {block}")
    t = np.asarray(x).reshape(n // batch, batch, c // block, block, h, w).transpose(0, 2, 4, 5, 1, 3)
    return t.reshape(-1, batch, block)


def tiles_to_nchw(tiles: np.ndarray, shape: tuple[int, int, int, int]) -> np.ndarray:
    """Inverse of nchw_to_tiles: tiles [(n/batch, c/block, h, w), batch, block] -> NCHW `shape`."""
    n, c, h, w = shape
    _, batch, block = tiles.shape
    t = np.asarray(tiles).reshape(n // batch, c // block, h, w, batch, block).transpose(0, 4, 1, 5, 2, 3)
    return t.reshape(n, c, h, w)


def oihw_to_tiles(w: np.ndarray, block_out: int, block_in: int) -> np.ndarray:
    """OIHW -> tiles [(o/bo, i/bi, kh, kw), block_out, block_in] (VTA's OIHWxoXi, tile order)."""
    o, i, kh, kw = w.shape
    if o % block_out or i % block_in:
        raise ProgramFormatError(
            f"OIHW {list(w.shape)}: O must be a multiple of {block_out}, I of {block_in}"
        )
    t = np.asarray(w).reshape(o // block_out, block_out, i // block_in, block_in, kh, kw)
    return t.transpose(0, 2, 4, 5, 1, 3).reshape(-1, block_out, block_in)


# ---- files --------------------------------------------------------------------------------


def _read_bytes(path: str | Path, what: str) -> bytes:
    p = Path(path)
    if not p.exists():
        raise ProgramFormatError(f"{what} file not found: {p}")
    if not p.is_file():
        raise ProgramFormatError(f"{what} file {p} is not a regular file")
    raw = p.read_bytes()
    if not raw:
        raise ProgramFormatError(f"{what} file {p} is empty")
    return raw


def read_program_bytes(path: str | Path) -> bytes:
    """Raw instruction stream of a `.bin` file, checked to be whole 16-byte instructions."""
    raw = _read_bytes(path, "program")
    if raw.startswith(NPY_MAGIC) or raw.startswith(ZIP_MAGIC):
        raise ProgramFormatError(f"program file {path} is a numpy/zip file, not a raw instruction stream")
    if len(raw) % 16:
        raise ProgramFormatError(
            f"program file {path}: {len(raw)} bytes is not a multiple of 16 (one instruction = 16 bytes)"
        )
    return raw


def load_program(path: str | Path, cfg: BoardConfig) -> list:
    """Decoded instructions of a `.bin` file; errors name the file and instruction index."""
    raw = read_program_bytes(path)
    insns = []
    for i in range(0, len(raw), 16):
        try:
            insns.append(decode(raw[i:i + 16], cfg))
        except BctvmError as err:
            raise type(err)(f"program file {path}, instruction {i // 16}: {err}") from None
    return insns


def save_program(path: str | Path, insns, cfg: BoardConfig) -> Path:
    """Write instructions as a raw `.bin` stream (16 bytes each, little-endian)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(encode_program(list(insns), cfg))
    return p


def load_dram(path: str | Path) -> np.ndarray:
    """A flat DRAM image file as a 1-D np.uint8 array."""
    raw = _read_bytes(path, "DRAM image")
    if raw.startswith(NPY_MAGIC):
        raise ProgramFormatError(
            f"DRAM image {path} is a numpy .npy file, not a flat byte image (write it with ndarray.tofile)"
        )
    if raw.startswith(ZIP_MAGIC):
        raise ProgramFormatError(f"DRAM image {path} is a zip archive, not a flat byte image")
    return np.frombuffer(raw, dtype=np.uint8).copy()


def save_dram(path: str | Path, dram) -> Path:
    """Write a DRAM image (1-D uint8 array or DramImage) as a flat byte file."""
    arr = dram.to_array() if isinstance(dram, DramImage) else np.asarray(dram)
    if arr.dtype != np.uint8 or arr.ndim != 1:
        raise ProgramFormatError(f"a DRAM image is a 1-D uint8 array, got {arr.dtype} {list(arr.shape)}")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(arr.tobytes())
    return p


def regions_path(dram_path: str | Path) -> Path:
    """Side file of a DRAM image holding its region map: IMAGE.bin -> IMAGE.regions.json."""
    p = Path(dram_path)
    return p.with_name(p.stem + ".regions.json")


def save_regions(path: str | Path, regions: dict) -> Path:
    """Write a region map {name: (byte_start, byte_end)} as JSON."""
    p = Path(path)
    p.write_text(json.dumps({k: [int(a), int(b)] for k, (a, b) in regions.items()}, indent=1) + "\n")
    return p


def load_regions(path: str | Path) -> dict[str, tuple[int, int]]:
    """Read a region map written by save_regions; ProgramFormatError on a malformed file."""
    p = Path(path)
    if not p.is_file():
        raise ProgramFormatError(f"region map file not found: {p}")
    data = read_json_object(p, f"region map {p}", ProgramFormatError,
                            "an object {name: [byte_start, byte_end]}")
    out = {}
    for name, span in data.items():
        ok = (
            isinstance(span, list) and len(span) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in span)
            and 0 <= span[0] <= span[1]
        )
        if not ok:
            raise ProgramFormatError(f"region map {p}: region '{name}' is not [byte_start, byte_end]")
        out[name] = (span[0], span[1])
    return out
