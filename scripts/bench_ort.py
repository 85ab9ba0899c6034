#!/usr/bin/env python3
"""Times ONNX models with onnxruntime, the way the padnas agent times them
with tract: batch 1, concrete input shape, warm-up, then timed runs; one JSON
line per model on stdout. Used by scripts/bench-agent for the side-by-side
comparison; not part of padnas itself.

usage: bench_ort.py --threads 1 --runs 50 --warmup 10 MODEL.onnx...
"""
import argparse
import json
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("models", nargs="+")
    a = ap.parse_args()
    for path in a.models:
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        feed = {inp.name: x}
        for _ in range(a.warmup):
            sess.run(None, feed)
        samples = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            sess.run(None, feed)
            samples.append((time.perf_counter() - t0) * 1e3)
        samples.sort()
        print(json.dumps({
            "model": path,
            "runtime": f"onnxruntime {ort.__version__}",
            "threads": a.threads,
            "runs": len(samples),
            "median_ms": statistics.median(samples),
            "min_ms": samples[0],
            "p10_ms": samples[int(0.1 * (len(samples) - 1))],
            "p90_ms": samples[int(0.9 * (len(samples) - 1))],
        }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
