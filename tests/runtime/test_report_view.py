"""Reports read at a glance: energy from the board constants, per-group lower bounds, the
table and the side-by-side PNG of a fused and a layerwise run (`bctvm report`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bctvm.runtime.report_view import label
from boards import load_board
from tests.cli_runner import run_cli
from tests.compiler.conftest import USER_MODELS, compile_and_run


@pytest.fixture(scope="module")
def two_reports(tmp_path_factory):
    """The user ResNet block net on zcu102, fused and layerwise: (fused, layerwise) reports."""
    d = tmp_path_factory.mktemp("reports")
    reps = []
    for mode in ("fused", "layerwise"):
        _, rep, _ = compile_and_run(d / mode, f"{USER_MODELS}:resdw", board="zcu102", mode=mode)
        (d / f"{mode}.json").write_text(json.dumps(rep))
        reps.append(rep)
    return d, reps


def test_energy_weights_bytes_and_macs_by_the_board_constants(two_reports):
    _, reps = two_reports
    e = load_board("zcu102").energy
    for rep in reps:
        want = (rep["dram_bytes"]["total"] * e.dram_pj_per_byte
                + rep["sram_bytes"] * e.sram_pj_per_byte + rep["macs"] * e.mac_pj) * 1e-6
        assert rep["energy"]["total_uj"] == pytest.approx(want) and want > 0
        assert rep["sram_bytes"] > rep["dram_bytes"]["total"]  # every DRAM byte also lands on chip
        assert sum(g["energy_uj"]["total_uj"] for g in rep["groups"]) == \
            pytest.approx(rep["energy"]["total_uj"])
        assert sum(g["lower_bound_bytes"] for g in rep["groups"]) == rep["lower_bound_bytes"]
    fused, layerwise = reps
    # keeping blocks on chip: fewer DRAM bytes, and fewer DRAM joules
    assert fused["dram_bytes"]["feature_maps"] < layerwise["dram_bytes"]["feature_maps"]
    assert fused["energy"]["dram_uj"] < layerwise["energy"]["dram_uj"]


def test_report_prints_a_table_and_writes_the_side_by_side_png(two_reports, monkeypatch,
                                                               capsys):
    import matplotlib.image

    d, reps = two_reports
    code = run_cli(monkeypatch, "report", d / "fused.json", d / "layerwise.json",
                   "--png", d / "cmp.png")
    out = capsys.readouterr().out
    assert code == 0
    for i, rep in enumerate(reps):
        assert f"[{i}] {label(rep)}" in out
        for g in rep["groups"]:
            assert any(line.startswith(g["name"] + " ") for line in out.splitlines())
    assert f"{reps[1]['cycles']:,}" in out and "DRAM / bound" in out and "energy" in out
    img = matplotlib.image.imread(d / "cmp.png")
    h, w = img.shape[:2]
    assert w > 1.5 * h  # two columns side by side
    assert np.unique(img.reshape(-1, img.shape[2]), axis=0).shape[0] > 10  # not blank


def test_report_errors_are_exit_2(tmp_path, monkeypatch, capsys):
    (tmp_path / "x.json").write_text('{"model": 1}')
    assert run_cli(monkeypatch, "report", tmp_path / "x.json") == 2
    assert "not a bctvm report" in capsys.readouterr().err
    for text, why in (("[1]", "expected a bctvm report"), ("{no", "not valid JSON")):
        (tmp_path / "x.json").write_text(text)
        assert run_cli(monkeypatch, "report", tmp_path / "x.json") == 2
        assert why in capsys.readouterr().err
    assert run_cli(monkeypatch, "report", tmp_path / "nope.json") == 2
