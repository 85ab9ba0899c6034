#!/usr/bin/env python3
"""Where a supernet training step spends its time, by libtorch operator and
input shape: the PyTorch twin of the padnas supernet (scripts/bench-train.py's
model) under torch.profiler, on random SPOS paths of a space. padnas runs the
same libtorch kernels, so this is its profile too (its own per-step code
measured below 1% of a step). A diagnostic for scripts/bench-train, not a test.

Usage: PYTHONPATH=.cache/libtorch scripts/profile-train.py [--space S]
           [--threads T] [--batch-size B] [--steps N] [--nchw] [--rows R]
"""

import argparse
import importlib.util
import os
import random
import time

import torch
import torch.nn.functional as F
import yaml

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("bench_train", os.path.join(here, "bench-train.py"))
bench_train = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench_train)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--space", default=os.path.join(here, "..", "configs", "spaces", "fmnist-small.yaml"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--nchw", action="store_true", help="NCHW instead of channels-last")
    ap.add_argument("--rows", type=int, default=25)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    random.seed(0)
    with open(args.space) as f:
        space = yaml.safe_load(f)
    fmt = torch.contiguous_format if args.nchw else torch.channels_last
    net = bench_train.Supernet(space).to(memory_format=fmt)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    c, h, w = space["input"]["channels"], space["input"]["height"], space["input"]["width"]
    x = torch.randn(args.batch_size, c, h, w).contiguous(memory_format=fmt)
    y = torch.randint(0, space["num_classes"], (args.batch_size,))
    paths = [[random.choice(ops) for ops in net.layer_ops] for _ in range(args.steps + 5)]

    def step(path):
        loss = F.cross_entropy(net(x, path), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for p in paths[:5]:
        step(p)
    start = time.perf_counter()
    with torch.profiler.profile(record_shapes=True) as prof:
        for p in paths[5:]:
            step(p)
    seconds = time.perf_counter() - start
    print(f"# {args.steps} steps of {args.batch_size}, {'NCHW' if args.nchw else 'channels-last'}, "
          f"{args.threads} thread(s), torch {torch.__version__}: {args.steps * args.batch_size / seconds:.0f} img/s "
          f"under the profiler")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    print(prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=30, max_shapes_column_width=90))


if __name__ == "__main__":
    main()
