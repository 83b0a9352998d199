"""Program files (.bin stream, flat DRAM image, region map) and the DramImage builder."""

import numpy as np
import pytest

from boards import list_boards, load_board
from bctvm.errors import ProgramFormatError, UnknownOpcodeError
from bctvm.isa import Alu, AluOp, Finish, Gemm, Load, MemType, Store, Uop, encode_uops
from bctvm.program import (
    DramImage,
    load_dram,
    load_program,
    load_regions,
    nchw_to_tiles,
    oihw_to_tiles,
    read_program_bytes,
    regions_path,
    save_dram,
    save_program,
    save_regions,
    tiles_to_nchw,
)

PYNQ = load_board("pynq")
PROGRAM = [
    Load(memory_type=MemType.UOP, x_size=4, x_stride=4),
    Load(memory_type=MemType.INP, sram_base=3, dram_base=70000, y_size=3, x_size=5, x_stride=9,
         y_pad_0=1, x_pad_1=2, push_next=True),
    Gemm(reset_reg=False, uop_bgn=0, uop_end=4, iter_out=3, iter_in=5, dst_factor_out=5,
         src_factor_out=9, src_factor_in=1, pop_prev=True),
    Alu(alu_opcode=AluOp.SHR, use_imm=True, imm=-7, push_next=True),
    Store(dram_base=12, pop_prev=True, push_prev=True),
    Finish(pop_next=True),
]


@pytest.mark.parametrize("board", list_boards())
def test_program_file_round_trip(tmp_path, board):
    cfg = load_board(board)
    path = save_program(tmp_path / "sub" / "PROG.bin", PROGRAM, cfg)
    assert path.stat().st_size == 16 * len(PROGRAM)
    assert load_program(path, cfg) == PROGRAM
    assert len(read_program_bytes(path)) == 16 * len(PROGRAM)


def test_program_file_errors(tmp_path):
    with pytest.raises(ProgramFormatError, match="not found: .*nope.bin"):
        load_program(tmp_path / "nope.bin", PYNQ)
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(ProgramFormatError, match="empty.bin is empty"):
        load_program(tmp_path / "empty.bin", PYNQ)
    (tmp_path / "odd.bin").write_bytes(bytes(33))
    with pytest.raises(ProgramFormatError, match="33 bytes is not a multiple of 16"):
        load_program(tmp_path / "odd.bin", PYNQ)
    np.save(tmp_path / "arr.npy", np.zeros(64, np.uint8))
    with pytest.raises(ProgramFormatError, match="numpy/zip"):
        load_program(tmp_path / "arr.npy", PYNQ)
    with pytest.raises(ProgramFormatError, match="not a regular file"):
        load_program(tmp_path, PYNQ)
    bad = bytearray(save_program(tmp_path / "ok.bin", PROGRAM, PYNQ).read_bytes())
    bad[16 * 2] = (bad[16 * 2] & ~7) | 6  # instruction 2 gets opcode 6
    (tmp_path / "bad.bin").write_bytes(bytes(bad))
    with pytest.raises(UnknownOpcodeError, match=r"bad.bin, instruction 2: unknown opcode 6"):
        load_program(tmp_path / "bad.bin", PYNQ)


def test_dram_file_round_trip_and_errors(tmp_path):
    data = np.arange(1000, dtype=np.int64).astype(np.uint8)
    save_dram(tmp_path / "IMAGE.bin", data)
    assert np.array_equal(load_dram(tmp_path / "IMAGE.bin"), data)
    with pytest.raises(ProgramFormatError, match="DRAM image file not found"):
        load_dram(tmp_path / "missing.bin")
    (tmp_path / "e.bin").write_bytes(b"")
    with pytest.raises(ProgramFormatError, match="is empty"):
        load_dram(tmp_path / "e.bin")
    np.save(tmp_path / "img.npy", data)
    with pytest.raises(ProgramFormatError, match="numpy .npy file, not a flat byte image"):
        load_dram(tmp_path / "img.npy")
    with pytest.raises(ProgramFormatError, match="1-D uint8"):
        save_dram(tmp_path / "x.bin", data.astype(np.int32))


@pytest.mark.parametrize("board", list_boards())
def test_dram_image_layout_is_element_aligned(board):
    cfg = load_board(board)
    eb = cfg.memtype_elem_bytes()
    img = DramImage(cfg)
    rng = np.random.default_rng(1)
    uops = [Uop(dst=i, src=2 * i, wgt=i % 7) for i in range(5)]
    inp = rng.integers(-128, 128, (7, cfg.batch, cfg.block_in))
    wgt = rng.integers(-128, 128, (3, cfg.block_out, cfg.block_in))
    acc = rng.integers(-(1 << 31), 1 << 31, (2, cfg.batch, cfg.block_out))
    acc8 = rng.integers(-128, 128, (4, cfg.batch, cfg.block_out))
    regs = [img.put_uops("uops", uops), img.put_inp("inp", inp), img.put_wgt("wgt", wgt),
            img.put_acc("acc", acc), img.put_acc8("res", acc8), img.alloc_out("out", 6)]
    data = img.to_array()
    assert data.dtype == np.uint8 and data.ndim == 1 and data.size == img.nbytes
    prev_end = 0
    for r in regs:
        assert r.elem_bytes == eb[r.kind]
        assert r.byte_start % r.elem_bytes == 0 and r.byte_start % cfg.bus_bytes == 0
        assert r.dram_base * r.elem_bytes == r.byte_start  # element i starts at byte i x elem bytes
        assert r.byte_start >= prev_end  # no overlap, in allocation order
        prev_end = r.byte_end
        assert img.regions[r.name] == (r.byte_start, r.byte_end)
    # raw bytes sit where the spec says, in little-endian order
    r = img.region("inp")
    for i in range(inp.shape[0]):
        b = (r.dram_base + i) * eb["inp"]
        assert np.array_equal(data[b:b + eb["inp"]].view(np.int8).reshape(cfg.batch, cfg.block_in), inp[i])
    r = img.region("uops")
    words = encode_uops(uops, cfg)
    for i, w in enumerate(words):
        b = (r.dram_base + i) * 4
        assert int.from_bytes(data[b:b + 4].tobytes(), "little") == int(w)
    r = img.region("acc")
    v = int(acc[1, 0, 2])
    b = (r.dram_base + 1) * eb["acc"] + 2 * 4
    assert int.from_bytes(data[b:b + 4].tobytes(), "little", signed=True) == v
    # read back every kind
    assert np.array_equal(img.read("inp"), inp)
    assert np.array_equal(img.read("wgt"), wgt)
    assert np.array_equal(img.read("acc"), acc)
    assert np.array_equal(img.read("res"), acc8)
    assert np.array_equal(img.read("uops"), words)
    assert not img.read("out").any()
    assert img.read("out").shape == (6, cfg.batch, cfg.block_out)


def test_dram_image_reads_a_result_image_and_partial_writes():
    img = DramImage(PYNQ)
    out = img.alloc_out("out", 3)
    final = img.to_array()
    final[out.byte_start + 16:out.byte_start + 32] = np.arange(16, dtype=np.uint8) + 250
    got = img.read("out", final)
    assert got[1, 0, 0] == np.int8(-6) and got[1, 0, 15] == np.int8(9)
    assert not got[0].any() and not got[2].any()
    img.alloc("x", "inp", 4)
    img.write("x", np.ones((2, 1, 16)), offset=2)
    assert img.read("x")[:2].sum() == 0 and img.read("x")[2:].sum() == 32
    assert out.elem(2) == out.dram_base + 2
    with pytest.raises(IndexError, match="element 3"):
        out.elem(3)


def test_dram_image_errors():
    img = DramImage(PYNQ)
    img.alloc_out("out", 2)
    with pytest.raises(ProgramFormatError, match="'out' allocated twice"):
        img.alloc_out("out", 2)
    with pytest.raises(ProgramFormatError, match=r"inp tiles: expected shape \[n, 1, 16\], got \[2, 16\]"):
        img.put_inp("bad", np.zeros((2, 16)))
    with pytest.raises(ProgramFormatError, match="outside int8"):
        img.put_inp("big", np.full((1, 1, 16), 128))
    with pytest.raises(ProgramFormatError, match="outside 0..1"):
        img.write("out", np.zeros((3, 1, 16)))
    with pytest.raises(ProgramFormatError, match="no DRAM region 'nope'"):
        img.read("nope")
    with pytest.raises(ProgramFormatError, match="unknown memory kind 'foo'"):
        img.alloc("f", "foo", 1)
    with pytest.raises(ProgramFormatError, match="at least one element"):
        img.alloc("z", "inp", 0)
    with pytest.raises(ProgramFormatError, match="does not hold region 'out'"):
        img.read("out", np.zeros(8, np.uint8))


def test_region_map_file(tmp_path):
    img = DramImage(PYNQ)
    img.put_wgt("weights", np.zeros((2, 16, 16)))
    img.alloc_out("output", 4)
    path = save_regions(regions_path(tmp_path / "IMAGE.bin"), img.regions)
    assert path.name == "IMAGE.regions.json"
    assert load_regions(path) == img.regions
    path.write_text('{"a": [5, 2]}')
    with pytest.raises(ProgramFormatError, match="region 'a' is not"):
        load_regions(path)
    path.write_text("[1,")
    with pytest.raises(ProgramFormatError, match="not valid JSON"):
        load_regions(path)
    with pytest.raises(ProgramFormatError, match="not found"):
        load_regions(tmp_path / "none.json")


def test_packed_layouts_put_each_tile_where_the_spec_says():
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, (2, 32, 3, 4))
    t = nchw_to_tiles(x, batch=2, block=16)
    assert t.shape == (2 * 3 * 4, 2, 16)
    cb, h, w = 1, 2, 3  # tile (c block 1, h 2, w 3) of the only batch group
    assert np.array_equal(t[(cb * 3 + h) * 4 + w], x[0:2, 16:32, h, w])
    assert np.array_equal(tiles_to_nchw(t, x.shape), x)
    x1 = rng.integers(-128, 128, (3, 16, 2, 2))  # batch 1, three images
    t1 = nchw_to_tiles(x1, batch=1, block=16)
    assert np.array_equal(t1[2 * 4 + 1, 0], x1[2, :, 0, 1])
    wt = rng.integers(-128, 128, (32, 48, 3, 3))
    tw = oihw_to_tiles(wt, 16, 16)
    assert tw.shape == (2 * 3 * 9, 16, 16)
    ob, ib, kh, kw = 1, 2, 0, 2
    assert np.array_equal(tw[((ob * 3 + ib) * 3 + kh) * 3 + kw], wt[16:32, 32:48, kh, kw])
    with pytest.raises(ProgramFormatError, match="C of 16"):
        nchw_to_tiles(np.zeros((1, 8, 2, 2)), 1, 16)
    with pytest.raises(ProgramFormatError, match="I of 16"):
        oihw_to_tiles(np.zeros((16, 8, 1, 1)), 16, 16)
