"""PixelRNN's Diagonal BiLSTM (van den Oord, Kalchbrenner & Kavukcuoglu, 2016).

A 7x7 mask-A convolution, then Diagonal BiLSTM layers with residual
connections, then two 1x1 mask-B layers giving each pixel's conditional. The
map is skewed (row r shifted right by r) so diagonals become columns; along
them, in both directions,

    [o, f, i, g] = sigma(K^ss (*) h_{i-1} + K^is (*) x_i),
    c_i = f . c_{i-1} + i . g,   h_i = o . tanh(c_i)

with K^is a 1x1 and K^ss a 2x1 column convolution. The right-to-left output is
shifted down one row, so no pixel sees the future; the map is unskewed at the
end. Receptive field: everything above and to the left. Sampling carries the
states: each new pixel computes one left-to-right step per layer at its own
position, and each new row the right-to-left pass over the row above
(DiagonalBiLSTMLayer.step), not the whole map again.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from pydantic import Field

from components.layers.pixelrnn import DiagonalBiLSTMLayer
from components.models.families.autoregressive import RasterConvAutoregressive
from components.models.base import register


@register
class DiagonalBiLSTM(RasterConvAutoregressive):
    name = "diagonal_bilstm"

    @dataclasses.dataclass
    class Params(RasterConvAutoregressive.Params):
        features: Annotated[int, Field(ge=1)] = 16  # h (the paper's MNIST models: 1 layer h=32, or 7 layers h=16)

    def __init__(self, spec, params):
        super().__init__(spec, params)
        h = params.features
        self.build([DiagonalBiLSTMLayer(h) for _ in range(params.layers)], h, params.output_features)
