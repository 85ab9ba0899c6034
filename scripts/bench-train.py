#!/usr/bin/env python3
"""The PyTorch side of scripts/bench-train: the same SPOS supernet, the same
path sequence (read from `padnas train --paths-out`), batch size and
optimiser as padnas, on the same torch wheel, timed the same way (wall time
of all steps, loss and accuracy read back every step).

Usage: bench-train.py SPACE.yaml PATHS.txt FMNIST_DIR --threads N
                      --batch-size B [--channels-last] [--shards S]

--shards S cuts each batch into S shards run by S Python threads, each with
threads/S intra-op threads (what padnas's train.shards does; here the GIL
serialises the Python side of every op, and BN running statistics are
updated by all shards).
Prints one JSON line: {"images_per_s": ..., "steps": ..., ...}.
"""

import argparse
import gzip
import json
import math
import os
import threading
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml


def parse_op(text):
    if text == "id":
        return None
    k, e = text[1:].split("e")
    return int(k), int(e)


def act(name):
    return nn.ReLU6(inplace=True) if name in (None, "relu6") else nn.ReLU(inplace=True)


def conv_bn(cin, cout, k, stride, groups=1):
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


class MbConv(nn.Module):
    def __init__(self, cin, cout, k, e, stride):
        super().__init__()
        hidden = cin * e
        layers = []
        if e != 1:
            layers += conv_bn(cin, hidden, 1, 1) + [nn.ReLU6(inplace=True)]
        layers += conv_bn(hidden, hidden, k, stride, hidden) + [nn.ReLU6(inplace=True)]
        layers += conv_bn(hidden, cout, 1, 1)
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class Supernet(nn.Module):
    """Stem, every candidate of every layer, head; forward takes a path."""

    def __init__(self, space):
        super().__init__()
        c_in = space["input"]["channels"]
        stem = space["stem"]
        self.stem = nn.Sequential(*conv_bn(c_in, stem["channels"], stem["kernel"], stem["stride"]),
                                  act(stem.get("activation")))
        self.layers = nn.ModuleList()
        self.layer_ops = []
        c = stem["channels"]
        for stage in space["stages"]:
            if "layers" in stage:
                per_layer = stage["layers"]
            else:
                n = stage["num_layers"]
                first = stage.get("first_ops") or stage["ops"]
                per_layer = [first] + [stage.get("ops")] * (n - 1)
            for i, ops in enumerate(per_layer):
                stride = stage["stride"] if i == 0 else 1
                cands = nn.ModuleDict()
                for op in ops:
                    p = parse_op(op)
                    if p is not None:
                        cands[op] = MbConv(c, stage["channels"], p[0], p[1], stride)
                self.layers.append(cands)
                self.layer_ops.append(list(ops))
                c = stage["channels"]
        head = space["head"]
        self.head = nn.Sequential(*conv_bn(c, head["channels"], 1, 1), act(head.get("activation")))
        self.fc = nn.Linear(head["channels"], space["num_classes"])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x, arch):
        x = self.stem(x)
        for cands, op in zip(self.layers, arch):
            if op != "id":
                x = cands[op](x)
        x = self.head(x).mean((2, 3))
        return self.fc(x)


def read_idx(path):
    with gzip.open(path) as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    t = torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8)
    return t.view(*dims)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("space")
    ap.add_argument("paths")
    ap.add_argument("fmnist")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--batch-size", type=int, required=True)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--shards", type=int, default=1)
    args = ap.parse_args()

    torch.set_num_threads(max(1, args.threads // args.shards))
    torch.manual_seed(1)
    with open(args.space) as f:
        space = yaml.safe_load(f)
    with open(args.paths) as f:
        archs = [line.strip().split(",") for line in f if line.strip()]

    images = read_idx(os.path.join(args.fmnist, "train-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(args.fmnist, "train-labels-idx1-ubyte.gz")).long()
    n = images.shape[0]

    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    net = Supernet(space).to(memory_format=fmt)
    net.train()
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        (decay if p.dim() > 1 else no_decay).append(p)
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 4e-5}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=args.lr, momentum=0.9, nesterov=True)

    bs = args.batch_size
    steps = len(archs)
    perm = torch.randperm(n)
    start = time.perf_counter()
    for step, arch in enumerate(archs):
        lo = (step * bs) % (n - bs + 1)
        idx = perm[lo:lo + bs]
        x = images.index_select(0, idx).unsqueeze(1).float().sub_(127.5).mul_(1 / 127.5)
        x = x.contiguous(memory_format=fmt)
        y = labels.index_select(0, idx)
        for g in opt.param_groups:
            g["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        opt.zero_grad(set_to_none=True)
        if args.shards == 1:
            logits = net(x, arch)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            lv = loss.item()
            hits = (logits.argmax(-1) == y).sum().item()
        else:
            results = [None] * args.shards

            def shard(k, xs, ys):
                out = net(xs, arch)
                loss = F.cross_entropy(out, ys) * (len(ys) / bs)
                loss.backward()  # autograd accumulates across threads safely
                results[k] = (loss.item(), (out.argmax(-1) == ys).sum().item())

            parts = list(zip(x.chunk(args.shards), y.chunk(args.shards)))
            workers = [threading.Thread(target=shard, args=(k, *parts[k])) for k in range(1, len(parts))]
            for w in workers:
                w.start()
            shard(0, *parts[0])
            for w in workers:
                w.join()
            lv = sum(r[0] for r in results)
            hits = sum(r[1] for r in results)
        opt.step()
        if os.environ.get("BENCH_VERBOSE"):
            print(f"step {step} loss {lv:.3f} acc {hits / bs:.3f}", flush=True)
    seconds = time.perf_counter() - start
    print(json.dumps({"images_per_s": steps * bs / seconds, "steps": steps, "seconds": seconds,
                      "threads": args.threads, "channels_last": args.channels_last, "shards": args.shards,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
