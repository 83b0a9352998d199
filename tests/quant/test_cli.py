"""`bctvm quantize CKPT DATA_DIR` through the console entry cli.main() (real exit codes)."""

import pytest
import torch

from bctvm.quant import QuantizedNet
from bctvm.train.checkpoint import ArchSpec, save_checkpoint
from bctvm.train.data import export_image_folder
from tests.cli_runner import cli_output as bctvm

from .helpers import randomize_bn


@pytest.fixture(scope="module")
def ckpt_and_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("quant_cli")
    export_image_folder("digits", root / "data", size=32, per_class=2, progress=False)
    arch = ArchSpec(name="block_resnet18", block_size=8, num_classes=10, input_size=32,
                    channels=3)
    torch.manual_seed(0)
    model = randomize_bn(arch.build())
    save_checkpoint(root / "model.pt", {"epoch": 0, "model": model.state_dict(),
                                        "arch": arch.to_dict()})
    return root


def test_quantize_writes_the_qnet_and_prints_figures(ckpt_and_data):
    root = ckpt_and_data
    code, out, err = bctvm("quantize", root / "model.pt", root / "data", "--calib", 8,
                           "-o", root / "out" / "qnet")
    assert code == 0, err[-2000:]
    assert "21 integer layers, boundary layer4.1.conv2" in out
    assert "val: float top-1" in out and "(20 images)" in out
    qnet = QuantizedNet.load(root / "out" / "qnet")
    assert qnet.info["calibration_images"] == 8 and qnet.input_shape == (3, 32, 32)
    assert qnet.info["arch"]["name"] == "block_resnet18"


def test_quantize_bad_inputs_exit_2(ckpt_and_data, tmp_path):
    root = ckpt_and_data
    code, _, err = bctvm("quantize", tmp_path / "none.pt", root / "data")
    assert code == 2 and "none.pt" in err
    code, _, err = bctvm("quantize", root / "model.pt", root / "data", "--calib", 0)
    assert code == 2 and "--calib must be at least 1" in err
