#!/usr/bin/env python3
"""Runs an exported padnas network with onnxruntime on raw inputs: the
independent check that the ONNX file means the same network elsewhere as in
tract. Used by the host crate's parity test; not part of padnas itself.

usage: ort_infer.py MODEL.onnx INPUTS.f32 OUTPUTS.f32

INPUTS.f32 holds N inputs of the model's (concrete, batch 1) input shape,
little-endian f32, one after another; each is run on its own and the first
output of each is written to OUTPUTS.f32 the same way. One JSON line on
stdout says how many ran.
"""
import json
import sys

import numpy as np
import onnxruntime as ort


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    model, inputs, outputs = sys.argv[1:]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    if not all(isinstance(d, int) for d in inp.shape):
        print(f"input shape {inp.shape} is not concrete", file=sys.stderr)
        return 1
    shape = list(inp.shape)
    per = int(np.prod(shape))
    x = np.fromfile(inputs, dtype="<f4")
    if x.size == 0 or x.size % per:
        print(f"{inputs}: {x.size} values, not a multiple of {shape}", file=sys.stderr)
        return 1
    n = x.size // per
    out = [
        sess.run(None, {inp.name: x[i * per:(i + 1) * per].reshape(shape)})[0]
        .astype("<f4")
        .ravel()
        for i in range(n)
    ]
    np.concatenate(out).tofile(outputs)
    print(json.dumps({"model": model, "images": n, "input_shape": shape,
                      "onnxruntime": ort.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
