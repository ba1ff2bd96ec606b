"""The recurrent layers of PixelRNN (van den Oord, Kalchbrenner & Kavukcuoglu, 2016):
the Row LSTM layer and the Diagonal BiLSTM layer (see components/models/row_lstm.py and
diagonal_bilstm.py for the models and their equations)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def lstm_update(gates: torch.Tensor, cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gates (B, 4h, ...) in the order output, forget, input, candidate -> (hidden, cell)."""
    o, f, i, g = gates.chunk(4, dim=1)
    cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(cell), cell


class RowLSTMLayer(nn.Module):
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


class DiagonalBiLSTMLayer(nn.Module):
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
