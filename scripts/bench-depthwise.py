#!/usr/bin/env python3
"""Depthwise convolution, forward + backward, as libtorch runs it (channels-
last, the layout padnas trains in) against the same convolution written as
one dense matrix per channel: y[c] = x[c] · M[c]ᵀ, where M[c] (out pixels ×
in pixels) is gathered from the k×k kernel (zero where the window leaves the
map), computed with one batched matmul. The dense form does HW/k² times the
multiply-adds, yet on small maps libtorch's depthwise backward is slow
enough that it wins. A benchmark for a possible supernet speed-up, not a test;
it checks that both forms agree.

Usage: PYTHONPATH=.cache/libtorch scripts/bench-depthwise.py [--threads T] [--batch B] [--reps R]
"""

import argparse
import time

import torch
import torch.nn.functional as F


def dense_index(h, w, k, stride):
    """Index into [kernel taps..., zero] for every (out pixel, in pixel)."""
    pad = k // 2
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    idx = torch.full((ho * wo, h * w), k * k, dtype=torch.long)
    for oy in range(ho):
        for ox in range(wo):
            for ky in range(k):
                for kx in range(k):
                    iy, ix = oy * stride - pad + ky, ox * stride - pad + kx
                    if 0 <= iy < h and 0 <= ix < w:
                        idx[oy * wo + ox, iy * w + ix] = ky * k + kx
    return idx, ho, wo


def dense_depthwise(x, weight, idx, ho, wo):
    n, c, h, w = x.shape
    taps = weight.shape[-1] * weight.shape[-2]
    padded = torch.cat([weight.reshape(c, taps), weight.new_zeros(c, 1)], 1)
    m = padded[:, idx]                                   # c, ho·wo, h·w
    xs = x.permute(1, 0, 2, 3).reshape(c, n, h * w)      # c, n, h·w
    y = torch.bmm(xs, m.transpose(1, 2))                 # c, n, ho·wo
    return y.reshape(c, n, ho, wo).permute(1, 0, 2, 3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"# torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, "
          f"median of {args.reps} forward+backward passes, channels-last")
    print(f"{'channels':>8} {'map':>6} {'k':>2} {'s':>2} {'libtorch ms':>12} {'dense ms':>9} {'speed-up':>9} {'max |diff|':>11}")
    # Shapes of fmnist-small's depthwise layers (hidden channels = in × expansion).
    for c, hw, k, s in [(384, 4, 7, 1), (384, 4, 5, 1), (384, 4, 3, 1), (192, 4, 7, 1),
                        (240, 7, 7, 1), (144, 14, 7, 2), (144, 14, 7, 1), (96, 28, 7, 2)]:
        x = torch.randn(args.batch, c, hw, hw).contiguous(memory_format=torch.channels_last).requires_grad_()
        wt = torch.randn(c, 1, k, k).contiguous(memory_format=torch.channels_last).requires_grad_()
        idx, ho, wo = dense_index(hw, hw, k, s)
        ref = F.conv2d(x, wt, None, s, k // 2, 1, c)
        diff = (ref - dense_depthwise(x, wt, idx, ho, wo)).abs().max().item()
        grad = torch.randn_like(ref)

        def timed(f):
            for _ in range(2):
                x.grad = wt.grad = None
                f().backward(grad)
            times = []
            for _ in range(args.reps):
                x.grad = wt.grad = None
                t = time.perf_counter()
                f().backward(grad)
                times.append(time.perf_counter() - t)
            return sorted(times)[len(times) // 2] * 1e3

        a = timed(lambda: F.conv2d(x, wt, None, s, k // 2, 1, c))
        b = timed(lambda: dense_depthwise(x, wt, idx, ho, wo))
        print(f"{c:>8} {hw:>3}x{hw:<2} {k:>2} {s:>2} {a:>12.1f} {b:>9.1f} {a / b:>8.2f}x {diff:>11.1e}")


if __name__ == "__main__":
    main()
