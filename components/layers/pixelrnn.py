"""The recurrent layers of PixelRNN (van den Oord, Kalchbrenner & Kavukcuoglu, 2016):
the Row LSTM layer and the Diagonal BiLSTM layer (see components/models/row_lstm.py and
diagonal_bilstm.py for the models and their equations), each with a `step` that computes
one position from cached state, for sampling (components/layers/masked.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from components.layers.masked import PositionStep, once, zeros


def lstm_update(gates: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gates (B, 4h, ...) in the order output, forget, input, candidate -> (hidden, cell)."""
    o, f, i = torch.sigmoid(gates[:, :3 * gates.shape[1] // 4]).chunk(3, dim=1)
    cell = f * cell + i * torch.tanh(gates[:, 3 * gates.shape[1] // 4:])
    return o * torch.tanh(cell), cell


class RowLSTMLayer(nn.Module, PositionStep):
    def __init__(self, h: int, k: int = 3):
        super().__init__()
        self.h = h
        # k x 1 along the row, masked to columns <= the current one (the centre included: mask B).
        self.input_to_state = nn.Conv2d(2 * h, 4 * h, (1, k), padding=(0, k // 2))
        mask = torch.ones_like(self.input_to_state.weight)
        mask[..., k // 2 + 1:] = 0
        self.register_buffer("mask", mask)
        self.state_to_state = nn.Conv1d(h, 4 * h, k, padding=k // 2)
        self.output = nn.Conv2d(h, 2 * h, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        inputs = F.conv2d(x, self.input_to_state.weight * self.mask, self.input_to_state.bias,
                          padding=self.input_to_state.padding)
        hidden = x.new_zeros(batch, self.h, width)
        cell = x.new_zeros(batch, self.h, width)
        rows = []
        # unbind, not inputs[:, :, r]: indexing's backward writes a whole-map zero tensor per row.
        for row_inputs in inputs.unbind(2):
            hidden, cell = lstm_update(row_inputs + self.state_to_state(hidden), cell)
            rows.append(hidden)
        return x + self.output(torch.stack(rows, dim=2))

    def step(self, x_at: torch.Tensor, r: int, c: int, cache: dict) -> torch.Tensor:
        """Output at (r, c) for cached sampling (components/layers/masked.py): the input's row window
        (columns c-p..c), the hidden row above (c-p..c+p) and the cell above come from the cache, and
        row r's state is stored as it is computed."""
        p = self.input_to_state.padding[1]
        if self not in cache:
            height, width = cache["grid"]
            cache[self] = (zeros(cache, 2 * self.h, height, width + p),          # the layer's input, left-padded
                           zeros(cache, self.h, height + 1, width + 2 * p),      # hidden; row 0: the zero row above
                           zeros(cache, self.h, height + 1, width))              # cell
        inputs, hidden, cell = cache[self]
        inputs[:, :, r, c + p] = x_at
        weight, bias = once(cache, (self, "weight"), lambda: (
            torch.cat([(self.input_to_state.weight * self.mask)[:, :, 0, :p + 1].flatten(1),
                       self.state_to_state.weight.flatten(1)], 1),
            self.input_to_state.bias + self.state_to_state.bias))
        gates = F.linear(torch.cat([inputs[:, :, r, c:c + p + 1].flatten(1),
                                    hidden[:, :, r, c:c + 2 * p + 1].flatten(1)], 1), weight, bias)
        h, cell[:, :, r + 1, c] = lstm_update(gates, cell[:, :, r, c])
        hidden[:, :, r + 1, c + p] = h
        return x_at + F.linear(h, self.output.weight[:, :, 0, 0], self.output.bias)


# Row by row through unbind and stack: per-row indexing of the whole map would make its backward
# write a whole-map zero tensor per row (measured 10x slower training).
def skew(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H, W + H - 1), row r shifted right by r."""
    height = x.shape[2]
    return torch.stack([F.pad(row, (r, height - 1 - r)) for r, row in enumerate(x.unbind(2))], dim=2)


def unskew(x: torch.Tensor, width: int) -> torch.Tensor:
    return torch.stack([row[..., r:r + width] for r, row in enumerate(x.unbind(2))], dim=2)


class DiagonalLSTM(nn.Module):
    """One direction (left to right) of the Diagonal BiLSTM, on a skewed map."""

    def __init__(self, h: int):
        super().__init__()
        self.h = h
        self.input_to_state = nn.Conv2d(2 * h, 4 * h, 1)   # 1x1: mask B is the identity for one channel
        self.state_to_state = nn.Conv1d(h, 4 * h, 2)       # 2x1 over rows (r-1, r) of the previous column

    def forward(self, skewed: torch.Tensor) -> torch.Tensor:
        batch, _, height, columns = skewed.shape
        inputs = self.input_to_state(skewed)
        hidden = skewed.new_zeros(batch, self.h, height)
        cell = skewed.new_zeros(batch, self.h, height)
        out = []
        for column_inputs in inputs.movedim(3, 0).contiguous().unbind(0):   # contiguous columns: 2x faster
            recurrent = self.state_to_state(F.pad(hidden, (1, 0)))  # row r sees rows r-1 and r
            hidden, cell = lstm_update(column_inputs + recurrent, cell)
            out.append(hidden)
        return torch.stack(out, dim=3)

    def cell(self, inputs, up, left, cell_left, cache: dict):
        """One position for cached sampling: the state at (r, c) from (r-1, c) and (r, c-1), in this
        direction's own coordinates (the skew makes them the previous column's rows r-1 and r)."""
        weight, bias = once(cache, (self, "weight"), lambda: (
            torch.cat([self.input_to_state.weight[:, :, 0, 0], self.state_to_state.weight[:, :, 0],
                       self.state_to_state.weight[:, :, 1]], 1),
            self.input_to_state.bias + self.state_to_state.bias))
        return lstm_update(F.linear(torch.cat([inputs, up, left], 1), weight, bias), cell_left)

    def state_tables(self, cache: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden, cell), each (B, h, H, H + W), column c + H holding position (r, c). Positions left of
        the image (c in [-r, -1], the skew's zero padding) see no pixel: they are filled here once, by
        the full pass's own column recursion on a zero input."""
        height, width = cache["grid"]
        hidden, cell = zeros(cache, self.h, height, height + width), zeros(cache, self.h, height, height + width)
        inputs = self.input_to_state.bias[None, :, None].expand(1, -1, height)
        h, c = inputs.new_zeros(1, self.h, height), inputs.new_zeros(1, self.h, height)
        for j in range(height - 1):                  # skewed column j holds (r, j - r) for each row r
            h, c = lstm_update(inputs + self.state_to_state(F.pad(h, (1, 0))), c)
            for r in range(j + 1, height):
                hidden[:, :, r, j - r + height], cell[:, :, r, j - r + height] = h[:, :, r], c[:, :, r]
        return hidden, cell


class DiagonalBiLSTMLayer(nn.Module, PositionStep):
    def __init__(self, h: int):
        super().__init__()
        self.forward_lstm, self.backward_lstm = DiagonalLSTM(h), DiagonalLSTM(h)
        self.output = nn.Conv2d(h, 2 * h, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        width = x.shape[3]
        left_to_right = unskew(self.forward_lstm(skew(x)), width)
        right_to_left = unskew(self.backward_lstm(skew(x.flip(3))), width).flip(3)
        right_to_left = F.pad(right_to_left, (0, 0, 1, 0))[:, :, :-1]  # down one row: no peeking right
        return x + self.output(left_to_right + right_to_left)

    def step(self, x_at: torch.Tensor, r: int, c: int, cache: dict) -> torch.Tensor:
        """Output at (r, c) for cached sampling. Left to right, (r, c) needs (r-1, c) and (r, c-1): one
        cell per pixel. Right to left is used one row down, so row r-1's is computed whole when row r
        starts."""
        height, width = cache["grid"]
        if self not in cache:
            cache[self] = (zeros(cache, 2 * self.output.in_channels, height, width),
                           self.forward_lstm.state_tables(cache), self.backward_lstm.state_tables(cache))
        inputs, (fh, fc), (bh, bc) = cache[self]
        inputs[:, :, r, c] = x_at
        up = fh[:, :, r - 1, c + height] if r > 0 else torch.zeros_like(fh[:, :, 0, 0])
        fh[:, :, r, c + height], fc[:, :, r, c + height] = self.forward_lstm.cell(
            x_at, up, fh[:, :, r, c + height - 1], fc[:, :, r, c + height - 1], cache)
        if r == 0:
            return x_at + F.linear(fh[:, :, r, c + height], self.output.weight[:, :, 0, 0], self.output.bias)
        if c == 0:
            q = r - 1
            for k in range(width):                   # k: the column counted from the right
                up = bh[:, :, q - 1, k + height] if q > 0 else torch.zeros_like(bh[:, :, 0, 0])
                bh[:, :, q, k + height], bc[:, :, q, k + height] = self.backward_lstm.cell(
                    inputs[:, :, q, width - 1 - k], up, bh[:, :, q, k + height - 1], bc[:, :, q, k + height - 1],
                    cache)
        both = fh[:, :, r, c + height] + bh[:, :, r - 1, width - 1 - c + height]
        return x_at + F.linear(both, self.output.weight[:, :, 0, 0], self.output.bias)
