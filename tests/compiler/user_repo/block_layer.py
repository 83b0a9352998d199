"""A block-convolution layer written the way a research repository writes it (test data).

A torch `_ConvNd` subclass with `block_size`, `type` and `padding_mode` attributes whose
forward branches on `input.shape` in Python: torch.export resolves the branch at capture,
torch.fx symbolic tracing cannot. Stride 2 is the stride-1 block conv and a 2x2 max-pool.
Written for bctvm's tests; it computes what bctvm's BlockConv2d computes.
"""

import torch.nn.functional as F
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.utils import _pair


class BlockConv2d(_ConvNd):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, block_size=8, type="fixed",
                 padding_mode="constant"):
        super().__init__(in_channels, out_channels, _pair(kernel_size), _pair(1),
                         _pair(padding), _pair(dilation), False, _pair(0), groups, bias,
                         "zeros")
        self.block_size = block_size
        self.type = type
        self.padding_mode = padding_mode
        self.pool_stride = stride

    def _blocks(self, height, width):
        if self.type == "hierarchical":  # block_size = number of blocks per side
            return height // self.block_size, width // self.block_size
        return min(self.block_size, height), min(self.block_size, width)

    def forward(self, input):
        n, c, h, w = input.shape
        bh, bw = self._blocks(h, w)
        ph, pw = self.padding
        if bh == h and bw == w:  # one block covers the map
            y = F.pad(input, (pw, pw, ph, ph), mode=self.padding_mode)
            y = F.conv2d(y, self.weight, self.bias, 1, 0, self.dilation, self.groups)
        else:
            nh, nw = h // bh, w // bw
            y = input.reshape(n, c, nh, bh, nw, bw).permute(0, 2, 4, 1, 3, 5)
            y = y.reshape(n * nh * nw, c, bh, bw)
            y = F.pad(y, (pw, pw, ph, ph), mode=self.padding_mode)
            y = F.conv2d(y, self.weight, self.bias, 1, 0, self.dilation, self.groups)
            oh, ow = y.shape[2], y.shape[3]
            y = y.reshape(n, nh, nw, self.out_channels, oh, ow).permute(0, 3, 1, 4, 2, 5)
            y = y.reshape(n, self.out_channels, nh * oh, nw * ow)
        if self.pool_stride == 2:
            y = F.max_pool2d(y, 2, 2)
        return y
