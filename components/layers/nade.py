"""NADE's log-likelihood and its gradient in one pass over blocks of pixels.

For pixels in visiting order, with the running sum a_d = c + W[:, <d] x_<d,

    h_d = sigmoid(rho_d a_d)        (rho_d = 1 for NADE; RNADE's activation rescaling)
    out_d = V_d h_d + b_d           (V_d: O x H; O = 1 for NADE, 3K for RNADE)
    log p(x) = sum_d log p(x_d | out_d)

Autograd would keep every h_d, a (batch, pixels, hidden) tensor far larger than
the cache, and walk it several times. Here a block of pixels is computed, used
and dropped while it is in cache. The gradient needs no second pass: with
g_d = dL/da_d known as soon as pixel d's conditional is (its loss is local),

    dL/dW[:, j] = sum_b x_bj sum_{d > j} g_bd = sum_b x_bj (T_b - P_bj),
    T = sum_d g_d,  P_j = sum_{d <= j} g_d,  dL/dc = sum_b T_b,

so the forward walk accumulates -x_j^T P_j block by block and adds x^T T at the
end. The gradient is computed for unit weight per image and scaled when the
backward's weights are uniform (a mean or sum loss, as in training); other
weights rerun the pass with them. Inside a block the prefix sums are one GEMM
against the strictly lower triangular mask, in (pixel, batch, hidden) layout so
that each per-pixel product V_d h_d and its transposes are batched matmuls.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

# (out (k, B, O), x (k, B)) -> (log p(x_d | out_d) (k, B), its gradient wrt out (k, B, O))
PixelLogProb = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _one_pass(x, W, c, V, b, rho, pixel_log_prob: PixelLogProb, block: int, weights=None, grads=True):
    B, D = x.shape
    xt, Wt = x.T.contiguous(), W.T.contiguous()                   # pixel-major: every block slice is contiguous
    a = c.repeat(B, 1)                                             # the running sum a_d (a copy: updated in place)
    log_p = x.new_empty(D, B)
    k0 = min(block, D)
    # Buffers reused across blocks: a fresh (k, B, H) tensor per block costs page faults.
    pre, h, dpre = (x.new_empty(k0, B, W.shape[0]) if i < 2 or grads else None for i in range(3))
    if grads:
        dWt, dV, db = torch.empty_like(Wt), torch.empty_like(V), torch.empty_like(b)
        drho = torch.empty_like(rho) if rho is not None else None
        through = torch.zeros_like(a)                              # P: sum of dL/da_d over pixels so far
    before = torch.ones(k0, k0, dtype=x.dtype, device=x.device).tril(-1)[:, None, :]   # [j < d]
    for s in range(0, D, block):
        e = min(s + block, D)
        k, xb, Wb = e - s, xt[s:e], Wt[s:e]
        prefix = xb.T[None] * before[:k, :, :k]                                  # (k, B, k): [j < d] x_bj
        A = torch.baddbmm(a[None], prefix, Wb.expand(k, -1, -1), out=pre[:k])     # (k, B, H): a_d
        hb = torch.sigmoid(A * rho[s:e, None, None] if rho is not None else A, out=h[:k])
        out = torch.baddbmm(b[s:e, None, :], hb, V[s:e].transpose(1, 2))         # (k, B, O)
        log_p[s:e], dout = pixel_log_prob(out, xb)
        a.addmm_(xb.T, Wb)
        if not grads:
            continue
        if weights is not None:
            dout = dout * weights[None, :, None]
        torch.sum(dout, 1, out=db[s:e])
        torch.bmm(dout.transpose(1, 2), hb, out=dV[s:e])
        if V.shape[1] == 1:    # NADE: an outer product (measured 2x faster as a broadcast than as a bmm)
            g = torch.mul(dout, V[s:e], out=dpre[:k])
        else:
            g = torch.bmm(dout, V[s:e], out=dpre[:k])
        torch.ops.aten.sigmoid_backward.grad_input(g, hb, grad_input=g)
        if rho is not None:
            drho[s:e] = (g * A).sum((1, 2))
            g.mul_(rho[s:e, None, None])
        through += g.sum(0)
        # -sum_b x_bj P_bj over the block: P_j = P_end - sum_{d > j in the block} g_d
        torch.mm(prefix.reshape(-1, k).T, g.reshape(-1, g.shape[2]), out=dWt[s:e])
        dWt[s:e].addmm_(xb, through, alpha=-1)
    if not grads:
        return log_p.sum(0), None
    dWt.addmm_(xt, through)
    return log_p.sum(0), (dWt.T.contiguous(), through.sum(0), dV, db, drho)


class _TiedLogProb(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, W, c, V, b, rho, pixel_log_prob, block, grads):
        # In the parameters' dtype even under autocast: the blocks are cache-sized, so lower precision
        # would save no memory traffic, and the result stays today's.
        with torch.autocast(x.device.type, enabled=False):
            log_p, ctx.grads = _one_pass(x, W, c, V, b, rho, pixel_log_prob, block, grads=grads)
        ctx.save_for_backward(x, W, c, V, b, rho)
        ctx.pixel_log_prob, ctx.block = pixel_log_prob, block
        return log_p

    @staticmethod
    def backward(ctx, grad_log_p):
        if bool((grad_log_p == grad_log_p[0]).all()):
            grads = [None if g is None else g * grad_log_p[0] for g in ctx.grads]
        else:
            x, W, c, V, b, rho = ctx.saved_tensors
            with torch.autocast(x.device.type, enabled=False):
                _, grads = _one_pass(x, W, c, V, b, rho, ctx.pixel_log_prob, ctx.block,
                                     weights=grad_log_p.to(x.dtype))
        return (None, *grads, None, None, None)


def tied_log_prob(x: torch.Tensor, W: torch.Tensor, c: torch.Tensor, V: torch.Tensor, b: torch.Tensor,
                  rho: torch.Tensor | None, pixel_log_prob: PixelLogProb, block: int | None = None) -> torch.Tensor:
    """(B,) log p(x) for x (B, D) in visiting order; W (H, D), c (H,), V (D, O, H), b (D, O), rho (D,) or None.
    Differentiable in the parameters, not in x (data)."""
    if block is None:
        # A (block, B, H) float32 block of about 1 MiB (one core's L2 here): 8 pixels at B=64, H=500
        # (measured fastest, 1 thread; 2 at B=512; the in-block GEMMs cost O(block) per element).
        block = max(2, min(16, 2 ** round(math.log2(2 ** 18 / (len(x) * W.shape[0])))))
    params = (W, c, V, b) + ((rho,) if rho is not None else ())
    grads = torch.is_grad_enabled() and any(p.requires_grad for p in params)
    return _TiedLogProb.apply(x.detach().to(W.dtype), W, c, V, b, rho, pixel_log_prob, block, grads)
