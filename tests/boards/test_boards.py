"""Board configurations: bundled boards load, derive the right sizes, bad configs are named."""

import subprocess
import sys
from pathlib import Path

import pytest

import boards
from boards import BoardConfig, list_boards, load_board
from bctvm.errors import BoardConfigError

PYNQ_TOML = (Path(boards.__file__).parent / "pynq.toml").read_text()


def test_bundled_boards_are_the_three_expected():
    assert list_boards() == ["pynq", "ultra96", "zcu102"]
    for name in list_boards():
        cfg = load_board(name)
        assert isinstance(cfg, BoardConfig)
        assert cfg.name == name


def test_pynq_derived_sizes_match_stock_vta():
    cfg = load_board("pynq")
    assert (cfg.batch, cfg.block_in, cfg.block_out) == (1, 16, 16)
    assert (cfg.uop_depth, cfg.inp_depth, cfg.wgt_depth, cfg.acc_depth) == (8192, 2048, 1024, 2048)
    assert (cfg.log_uop_depth, cfg.log_inp_depth, cfg.log_wgt_depth, cfg.log_acc_depth) == (13, 11, 10, 11)
    assert (cfg.inp_elem_bytes, cfg.wgt_elem_bytes, cfg.acc_elem_bytes, cfg.out_elem_bytes) == (16, 256, 64, 16)
    assert cfg.uop_elem_bytes == 4 and cfg.insn_bytes == 16
    assert (cfg.uop_buff_bytes, cfg.inp_buff_bytes, cfg.wgt_buff_bytes, cfg.acc_buff_bytes) == (
        32 * 1024, 32 * 1024, 256 * 1024, 128 * 1024)
    assert cfg.bus_bytes == 8 and cfg.clock_mhz == 100
    assert cfg.onchip_reuse is False
    assert cfg.key == "1x16_i8w8a32_15_15_18_17"
    assert cfg.memtype_elem_bytes() == {"uop": 4, "wgt": 256, "inp": 16, "acc": 64, "out": 16, "acc8": 16}
    # uop: dst 11 + src 11 + wgt 10 = 32 bits exactly
    assert cfg.word_bits()["uop"] == 32


def test_ultra96_and_zcu102_derived_sizes():
    u96 = load_board("ultra96")
    assert (u96.block_in, u96.bus_bytes, u96.acc_depth) == (16, 16, 2048)
    assert u96.clock_mhz > load_board("pynq").clock_mhz
    z = load_board("zcu102")
    assert (z.block_in, z.block_out, z.onchip_reuse) == (32, 32, True)
    assert (z.inp_elem_bytes, z.wgt_elem_bytes, z.acc_elem_bytes) == (32, 1024, 128)
    assert (z.inp_depth, z.wgt_depth, z.acc_depth) == (8192, 256, 2048)
    assert z.gemm_macs_per_cycle == 1024
    for name in list_boards():
        for fmt, used in load_board(name).word_bits().items():
            assert used <= (32 if fmt == "uop" else 64), (name, fmt)


def _board_file(tmp_path, **changes) -> Path:
    """A copy of pynq.toml with `key = value` lines replaced (or added under [core])."""
    text = PYNQ_TOML
    for key, value in changes.items():
        lines = text.splitlines()
        hit = [i for i, ln in enumerate(lines) if ln.split("=")[0].strip() == key]
        if hit:
            lines[hit[0]] = f"{key} = {value}"
        else:
            lines.insert(lines.index("[core]") + 1, f"{key} = {value}")
        text = "\n".join(lines) + "\n"
    path = tmp_path / "custom.toml"
    path.write_text(text)
    return path


def test_custom_file_loads(tmp_path):
    cfg = load_board(_board_file(tmp_path, log_acc_buff_size=16))
    assert cfg.acc_depth == 1024 and cfg.log_acc_depth == 10


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"log_block_in": 4.5}, "log_block_in"),
        # acc depth 2**13: ALU word 1 needs 4 x 13 + 20 = 72 bits (GEMM word 1: 2 x 29 = 58)
        ({"log_acc_buff_size": 19, "log_inp_buff_size": 13, "log_wgt_buff_size": 15}, "alu.word1"),
        ({"log_inp_buff_size": 20, "log_wgt_buff_size": 20}, "gemm.word1"),
        ({"log_block_out": 5, "onchip_reuse": "true"}, "onchip_reuse"),
        ({"log_bus_widht": 6}, "log_bus_widht"),
        ({"log_batch": 7}, "log_batch"),
        ({"clock_mhz": 0}, "clock_mhz"),
    ],
    ids=["non-integer-log", "alu-word-too-wide", "gemm-word-too-wide", "reuse-needs-square",
         "unknown-field", "batch-range", "clock"],
)
def test_invalid_configs_name_the_field(tmp_path, changes, field):
    with pytest.raises(BoardConfigError, match=field.replace(".", r"\.")):
        load_board(_board_file(tmp_path, **changes))


def test_unknown_board_and_missing_file(tmp_path):
    with pytest.raises(BoardConfigError, match="unknown board 'vc707'.*pynq"):
        load_board("vc707")
    with pytest.raises(BoardConfigError, match="not found"):
        load_board(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [\n")
    with pytest.raises(BoardConfigError, match="not valid TOML"):
        load_board(bad)


def test_board_config_is_frozen():
    cfg = load_board("pynq")
    with pytest.raises(AttributeError):
        cfg.log_block_in = 5


def test_boards_command_lists_all_three():
    out = subprocess.run([sys.executable, "-m", "cli", "boards"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == ["pynq", "ultra96", "zcu102"]
    assert "1x16_i8w8a32_15_15_18_17" in lines[0]
    assert "onchip_reuse on" in lines[2]


def test_energy_constants_are_read_with_their_cited_source(tmp_path):
    for name in list_boards():
        cfg = load_board(name)
        assert cfg.energy.dram_pj_per_byte > cfg.energy.sram_pj_per_byte > cfg.energy.mac_pj > 0
        text = (Path(boards.__file__).parent / f"{name}.toml").read_text()
        assert "Horowitz" in text and "ISSCC 2014" in text
    base = (Path(boards.__file__).parent / "pynq.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(base.replace("mac_pj = 0.3", "mac_pj = -1"))
    with pytest.raises(BoardConfigError, match=r"energy\.mac_pj"):
        load_board(bad)
    bad.write_text(base.replace("mac_pj = 0.3", "mac_pj = 0.3\nsram_pj = 2"))
    with pytest.raises(BoardConfigError, match=r"\[energy\]"):
        load_board(bad)
    # an artifact's embedded board (board_to_dict) round-trips, energy included
    cfg = load_board("zcu102")
    assert boards.board_from_dict(boards.board_to_dict(cfg)) == cfg
