"""PixelRNN's Row LSTM (van den Oord, Kalchbrenner & Kavukcuoglu, 2016).

A 7x7 mask-A convolution, then LSTM layers with residual connections (each
maps 2h features to h and back to 2h), then two 1x1 mask-B layers giving each
pixel's conditional. Row by row:

    [o, f, i, g] = sigma(K^ss (*) h_{r-1} + K^is (*) x_r),
    c_r = f . c_{r-1} + i . g,   h_r = o . tanh(c_r)

K^is is a k x 1 convolution along the row, masked to the current and earlier
columns (computed for the whole map at once); K^ss an unmasked k x 1
convolution over the previous row's hidden state. Receptive field: a triangle
above the pixel. Sampling carries the state: each new pixel computes one LSTM
step per layer, at its own position, from the cached row above
(RowLSTMLayer.step), not the whole map again.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from pydantic import Field

from components.layers.pixelrnn import RowLSTMLayer
from components.models.families.autoregressive import RasterConvAutoregressive
from components.models.base import register


@register
class RowLSTM(RasterConvAutoregressive):
    name = "row_lstm"

    @dataclasses.dataclass
    class Params(RasterConvAutoregressive.Params):
        """features, layers and output_features (the paper: h = 128 for MNIST-size images), and:"""
        kernel: Annotated[int, Field(ge=1)] = 3             # k of the k x 1 convolutions

    def __init__(self, spec, params):
        super().__init__(spec, params)
        h = params.features
        self.build([RowLSTMLayer(h, params.kernel) for _ in range(params.layers)], h, params.output_features)
