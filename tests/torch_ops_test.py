#!/usr/bin/env python3
# Every elementwise row of the op table against PyTorch in float64: values and gradients on both
# tapes, at points on both sides of every kink, far on the tails and at NaN; and the structural
# tensor ops (amax, amin, argmax, where, batched matmul, N-d linear) on tensors with ties and NaN.
# tapes, at points on both sides of every kink, far on the tails and at NaN; and the tensor shape
# ops (cat, stack, slice, index_select, gather, transpose, reshape), values and gradients.
# Usage: /usr/bin/python3 torch_ops_test.py PATH/TO/torch_ops_export
import json
import math
import os
import subprocess
import sys
import unittest

import runner  # tests/runner.py: the closing "N passed, M failed" line

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:
    print(f"torch_ops_test: {sys.executable} cannot import torch ({e}); "
          "run tools/setup.sh test to install Debian's python3-torch", file=sys.stderr)
    sys.exit(1)

EXPORT = None  # set from argv in main()


def prelu(x, a, param=None):
    return F.prelu(x.reshape(1), a.reshape(1)).reshape(())


def bce(p, y, param):
    return F.binary_cross_entropy(p, y, reduction="none")


# The op table's rows as PyTorch computes them: name -> f(*operands, param). A row the export
# prints and this table lacks fails the test (Note [The op table] in ops.hpp).
TORCH = {
    "add": lambda a, b, p: a + b,
    "sub": lambda a, b, p: a - b,
    "mul": lambda a, b, p: a * b,
    "div": lambda a, b, p: a / b,
    "neg": lambda a, p: -a,
    "exp": lambda a, p: torch.exp(a),
    "log": lambda a, p: torch.log(a),
    "sqrt": lambda a, p: torch.sqrt(a),
    "abs": lambda a, p: torch.abs(a),
    "sigmoid": lambda a, p: torch.sigmoid(a),
    "tanh": lambda a, p: torch.tanh(a),
    "relu": lambda a, p: F.relu(a),
    "softplus": lambda a, p: F.softplus(a),
    "leaky_relu": lambda a, p: F.leaky_relu(a, p),
    "elu": lambda a, p: F.elu(a, p),
    "prelu": lambda a, b, p: prelu(a, b),
    "max": lambda a, b, p: torch.maximum(a, b),
    "pow": lambda a, b, p: torch.pow(a, b),
    "pow_scalar": lambda a, p: torch.pow(a, p),
    "gelu": lambda a, p: F.gelu(a),
    "gelu_tanh": lambda a, p: F.gelu(a, approximate="tanh"),
    "silu": lambda a, p: F.silu(a),
    "min": lambda a, b, p: torch.minimum(a, b),
    "clamp_min": lambda a, p: torch.clamp_min(a, p),
    "clamp_max": lambda a, p: torch.clamp_max(a, p),
    "bce": bce,
    "normal_cdf": lambda a, p: torch.special.ndtr(a),
}


# Where PyTorch refuses the input or has no gradient to compare: the points are skipped (or the
# operand's gradient is not compared), with the reason.
def skipped(op, x):
    if op == "bce":  # torch: "all elements of input should be between 0 and 1"
        return not all(0 <= v <= 1 for v in x)
    return False


def compared_grads(op, arity):
    if op == "bce":  # torch's binary_cross_entropy has no derivative for the target
        return [0]
    return list(range(arity))


def relative_tolerance(op, x):
    # At p = 0 or 1 bce's gradient divides by its clamp, 1e-12: PyTorch's EPSILON is the float
    # nearest 1e-12 (9.99999996e-13), ours the double, 4e-9 apart.
    if op == "bce" and x[0] in (0.0, 1.0):
        return 1e-8
    return 1e-9


def close(ours, theirs, rel=1e-9):
    """Both NaN, the same infinity, or within 1e-12 absolute plus `rel` relative."""
    if math.isnan(theirs) or math.isnan(ours):
        return math.isnan(theirs) and math.isnan(ours)
    if math.isinf(theirs) or math.isinf(ours):
        return ours == theirs
    return abs(ours - theirs) <= 1e-12 + rel * abs(theirs)


def torch_at(op, x, param):
    ts = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in x]
    y = TORCH[op](*ts, param)
    y.backward()
    return y.item(), [0.0 if t.grad is None else t.grad.item() for t in ts]


# The tensor shape ops as PyTorch computes them: name -> f(operands, args).
def python_slice(x, a):
    index = [slice(None)] * x.dim()
    index[a["axis"]] = slice(a["start"], a["stop"], a["step"])
    return x[tuple(index)]


SHAPE_OPS = {
    "cat": lambda xs, a: torch.cat(xs, a["axis"]),
    "stack": lambda xs, a: torch.stack(xs, a["axis"]),
    "slice": lambda xs, a: python_slice(xs[0], a),
    "index_select": lambda xs, a: torch.index_select(xs[0], a["axis"], torch.tensor(a["index"])),
    "gather": lambda xs, a: torch.gather(
        xs[0], a["axis"], torch.tensor(a["index"]).reshape(a["index_shape"])),
    "transpose": lambda xs, a: torch.transpose(xs[0], a["dim0"], a["dim1"]),
    "reshape": lambda xs, a: xs[0].reshape(a["dims"]),
}


class TorchOps(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        out = subprocess.run([EXPORT], capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"torch_ops_export failed: {out.stderr}")
        exported = json.loads(out.stdout)
        cls.cases = exported["cases"]
        cls.shape_cases = exported["shape_ops"]

    def test_every_row_has_a_torch_counterpart(self):
        rows = {c["op"] for c in self.cases}
        self.assertEqual(sorted(rows - TORCH.keys()), [], "rows with no entry in TORCH")
        self.assertEqual(sorted(TORCH.keys() - rows), [], "TORCH entries for no row")
        for new in ("gelu", "gelu_tanh", "silu", "min", "clamp_min", "clamp_max"):
            self.assertIn(new, rows)

    def test_values_and_gradients_match_torch(self):
        checked = 0
        for case in self.cases:
            op, param = case["op"], case["param"]
            arity = len(case["inputs"])
            for tape, result in case["tapes"].items():
                for i in range(len(case["inputs"][0])):
                    x = [operand[i] for operand in case["inputs"]]
                    if skipped(op, x):
                        continue
                    value, grad = torch_at(op, x, param)
                    where = f"{op}{tuple(x)} param={param} on the {tape} tape"
                    with self.subTest(where=where):
                        self.assertTrue(close(result["value"][i], value),
                                        f"{where}: value {result['value'][i]}, torch {value}")
                        for k in compared_grads(op, arity):
                            ours = result["grad"][k][i]
                            self.assertTrue(close(ours, grad[k], relative_tolerance(op, x)),
                                            f"{where}: grad {k} {ours}, torch {grad[k]}")
                    checked += 1
        self.assertGreater(checked, 1000)

    def test_shape_ops_match_torch(self):
        # Values and gradients (backward with a seed of the output's shape) of each shape op;
        # an input used twice gets both gradients, as in torch.
        for case in self.shape_cases:
            op, args = case["op"], case["args"]
            with self.subTest(op=op, args=args):
                xs = [torch.tensor(i["data"], dtype=torch.float64).reshape(i["shape"])
                      .requires_grad_() for i in case["inputs"]]
                y = SHAPE_OPS[op]([xs[k] for k in case["uses"]], args)
                y.backward(torch.tensor(case["seed"], dtype=torch.float64).reshape(y.shape))
                self.assertEqual(list(y.shape), case["value"]["shape"])
                for ours, theirs in zip(case["value"]["data"], y.detach().flatten().tolist()):
                    self.assertTrue(close(ours, theirs), f"{op} {args}: value {ours}, torch {theirs}")
                for k, x in enumerate(xs):
                    theirs = ([0.0] * x.numel() if x.grad is None  # an empty slice's input
                              else x.grad.flatten().tolist())
                    self.assertEqual(len(case["grads"][k]), len(theirs))
                    for a, b in zip(case["grads"][k], theirs):
                        self.assertTrue(close(a, b), f"{op} {args}: grad {k} {a}, torch {b}")
        self.assertEqual(sorted({c["op"] for c in self.shape_cases}), sorted(SHAPE_OPS))

    def test_nan_is_never_swallowed(self):
        # Every row's value at a NaN operand is NaN, as in PyTorch (the comparison above checks
        # the gradients there).
        for case in self.cases:
            for i, first in enumerate(case["inputs"][0]):
                if math.isnan(first):
                    with self.subTest(op=case["op"]):
                        self.assertTrue(math.isnan(case["tapes"]["scalar"]["value"][i]))
                        self.assertTrue(math.isnan(case["tapes"]["tensor"]["value"][i]))


# The structural ops as PyTorch computes them: name -> f(operands, axis, keepdims), axis None
# for a reduction over all elements. amax_axis is ag::amax(a, axis): torch.max(a, dim)'s values,
# whose gradient goes to the first maximum (Note [Ties in amax and amin]); the others are
# torch.amax/amin, which split a tie evenly.
def over(f_all, f_axis):
    return lambda x, axis, keep: f_all(x[0]) if axis is None else f_axis(x[0], axis, keep)


STRUCTURAL = {
    "amax": over(torch.amax, lambda a, d, k: torch.amax(a, d, k)),
    "amax_axis": lambda x, axis, keep: torch.max(x[0], axis, keep).values,
    "amin": over(torch.amin, lambda a, d, k: torch.amin(a, d, k)),
    "argmax": over(torch.argmax, lambda a, d, k: torch.argmax(a, d, k)),
    "where": lambda x, axis, keep: torch.where(x[0] != 0, x[1], x[2]),
    "matmul": lambda x, axis, keep: torch.matmul(x[0], x[1]),
    "linear": lambda x, axis, keep: F.linear(x[0], x[1], x[2]),
}


class TorchStructuralOps(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        out = subprocess.run([EXPORT], capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"torch_ops_export failed: {out.stderr}")
        cls.cases = json.loads(out.stdout)["structural"]

    def test_every_structural_op_has_a_torch_counterpart(self):
        self.assertEqual({c["op"] for c in self.cases}, STRUCTURAL.keys())
        self.assertGreater(len(self.cases), 50)
        self.assertTrue(any(math.isnan(v) for c in self.cases for v in c["inputs"][0]))

    def test_values_shapes_and_gradients_match_torch(self):
        for case in self.cases:
            where = f"{case['op']} axis={case['axis']} keepdims={case['keepdims']} " \
                    f"shapes={case['shapes']} inputs[0]={case['inputs'][0][:6]}..."
            with self.subTest(where=where):
                ts = [torch.tensor(v, dtype=torch.float64).reshape(s)
                      for v, s in zip(case["inputs"], case["shapes"])]
                for k in case["graded"]:
                    ts[k].requires_grad_(True)
                y = STRUCTURAL[case["op"]](ts, case["axis"], case["keepdims"])
                self.assertEqual(list(y.shape), case["shape"], where)
                theirs = y.detach().double().reshape(-1).tolist()
                self.assertEqual(len(theirs), len(case["value"]), where)
                for ours, t in zip(case["value"], theirs):
                    self.assertTrue(close(ours, t),
                                    f"{where}: value {case['value']}, torch {theirs}")
                if not case["graded"]:
                    continue
                seed = torch.tensor(case["seed"], dtype=torch.float64).reshape(y.shape)
                y.backward(seed)
                for k in case["graded"]:
                    g = ts[k].grad.reshape(-1).tolist()
                    for ours, t in zip(case["grad"][k], g):
                        self.assertTrue(close(ours, t),
                                        f"{where}: grad {k} {case['grad'][k]}, torch {g}")


def main():
    global EXPORT
    if len(sys.argv) != 2:
        print("usage: torch_ops_test.py PATH/TO/torch_ops_export", file=sys.stderr)
        return 2
    EXPORT = os.path.abspath(sys.argv[1])
    print(f"torch {torch.__version__} from {sys.executable}")
    return runner.run(__name__)


if __name__ == "__main__":
    sys.exit(main())
