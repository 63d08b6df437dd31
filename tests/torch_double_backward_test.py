#!/usr/bin/env python3
# Double backward on the tensor tape against torch.autograd.grad(..., create_graph=True) in
# float64: every elementwise row's gradient and Hessian-vector product at its test points,
# small MLPs (tanh, relu, gelu, sigmoid) with a mean squared error, a softmax classifier's
# cross-entropy and squared softmax error, and one loss through every structural op.
# Usage: /usr/bin/python3 torch_double_backward_test.py PATH/TO/torch_double_backward_export
import json
import os
import subprocess
import sys
import unittest

import runner  # tests/runner.py: the closing "N passed, M failed" line

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:
    print(f"torch_double_backward_test: {sys.executable} cannot import torch ({e}); "
          "run tools/setup.sh test to install Debian's python3-torch", file=sys.stderr)
    sys.exit(1)

from torch_ops_test import TORCH, close  # the rows as PyTorch computes them, one comparison

EXPORT = None  # set from argv in main()


def t64(values, grad=False):
    return torch.tensor(values, dtype=torch.float64, requires_grad=grad)


def grad_and_hvp(loss, wrt, v):
    """d loss/d wrt recorded with create_graph, and d <grad, v>/d wrt (a Hessian-vector
    product), zeros where PyTorch finds no path (allow_unused, as tapegrad's zeros)."""
    g = torch.autograd.grad(loss, wrt, create_graph=True)
    inner = sum((gk * t64(vk).reshape(gk.shape)).sum() for gk, vk in zip(g, v))
    if inner.requires_grad:
        h = torch.autograd.grad(inner, wrt, allow_unused=True)
    else:  # the gradient does not depend on wrt: a linear function
        h = [None] * len(wrt)
    h = [torch.zeros_like(t) if hk is None else hk for hk, t in zip(h, wrt)]
    return ([gk.detach().reshape(-1).tolist() for gk in g],
            [hk.detach().reshape(-1).tolist() for hk in h])


class TorchDoubleBackward(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        out = subprocess.run([EXPORT], capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"torch_double_backward_export failed: {out.stderr}")
        cls.exported = json.loads(out.stdout)

    def compare(self, where, ours, theirs):
        self.assertEqual(len(ours), len(theirs), where)
        for k, (o, t) in enumerate(zip(ours, theirs)):
            self.assertEqual(len(o), len(t), f"{where} [{k}]")
            for i, (x, y) in enumerate(zip(o, t)):
                self.assertTrue(close(x, y), f"{where} [{k}][{i}]: ours {x}, torch {y}")

    def test_every_row(self):
        rows = {case["op"] for case in self.exported["rows"]}
        self.assertEqual(sorted(rows ^ TORCH.keys()), [], "rows and TORCH entries differ")
        for case in self.exported["rows"]:
            op = case["op"]
            with self.subTest(op=op):
                a = t64(case["a"], True)
                wrt = [a]
                b = None
                if case["b"] is not None:
                    b = t64(case["b"], case["wrt"] == 2)
                    if case["wrt"] == 2:
                        wrt.append(b)
                # element by element through 0-d tensors, as TORCH's rows take them (prelu)
                terms = []
                for i, w in enumerate(case["w"]):
                    operands = [a[i]] + ([] if b is None else [b[i]])
                    terms.append(w * TORCH[op](*operands, case["param"]))
                g, h = grad_and_hvp(sum(terms), wrt, case["v"][:len(wrt)])
                self.compare(f"{op} gradient", case["grad"], g)
                self.compare(f"{op} Hessian-vector product", case["hvp"], h)

    def test_mlps(self):
        activations = {"tanh": torch.tanh, "relu": F.relu, "gelu": F.gelu,
                       "sigmoid": torch.sigmoid}
        shapes = [(8, 2), (8,), (1, 8), (1,)]
        self.assertEqual([c["activation"] for c in self.exported["mlps"]], list(activations))
        for case in self.exported["mlps"]:
            with self.subTest(activation=case["activation"]):
                p = [t64(v, True).reshape(s).detach().requires_grad_(True)
                     for v, s in zip(case["params"], shapes)]
                x = t64(case["x"]).reshape(6, 2)
                y = t64(case["y"]).reshape(6, 1)
                h = activations[case["activation"]](F.linear(x, p[0], p[1]))
                loss = ((F.linear(h, p[2], p[3]) - y) ** 2).mean()
                self.assertTrue(close(case["loss"], loss.item()))
                g, hv = grad_and_hvp(loss, p, case["v"])
                self.compare(f"{case['activation']} MLP gradient", case["grad"], g)
                self.compare(f"{case['activation']} MLP Hessian-vector product", case["hvp"], hv)

    def test_classifiers(self):
        shapes = [(4, 2), (4,), (3, 4), (3,)]
        self.assertEqual([c["loss"] for c in self.exported["classifiers"]],
                         ["cross_entropy", "softmax_squared"])
        for case in self.exported["classifiers"]:
            with self.subTest(loss=case["loss"]):
                p = [t64(v, True).reshape(s).detach().requires_grad_(True)
                     for v, s in zip(case["params"], shapes)]
                x = t64(case["x"]).reshape(6, 2)
                labels = torch.tensor(case["labels"])
                logits = F.linear(torch.tanh(F.linear(x, p[0], p[1])), p[2], p[3])
                if case["loss"] == "cross_entropy":
                    loss = F.cross_entropy(logits, labels)
                else:
                    one_hot = F.one_hot(labels, 3).to(torch.float64)
                    loss = ((torch.softmax(logits, 1) - one_hot) ** 2).mean()
                self.assertTrue(close(case["value"], loss.item()))
                g, hv = grad_and_hvp(loss, p, case["v"])
                self.compare(f"{case['loss']} gradient", case["grad"], g)
                self.compare(f"{case['loss']} Hessian-vector product", case["hvp"], hv)

    def test_structural(self):
        # the loss of torch_double_backward_export.cpp's structural_case, op for op
        case = self.exported["structural"]
        shapes = [(3, 4), (4,), (2, 4, 3), (5, 3), (5,)]
        p = [t64(v, True).reshape(s).detach().requires_grad_(True)
             for v, s in zip(case["params"], shapes)]
        a = p[0]
        cond = t64(case["cond"]).reshape(3, 4) != 0
        h = torch.where(cond, a * a, p[1])
        joined = torch.cat([h[:, 0:4:2], torch.index_select(h, 1, torch.tensor([2, 0, 2]))], 1)
        gathered = torch.gather(a, 0, torch.tensor([[2, 0, 1, 1], [0, 2, 2, 1]]))
        product = torch.matmul(torch.stack([a, h], 0), p[2])
        out = F.linear(torch.tanh(product), p[3], p[4])
        loss = ((torch.max(h, 1).values ** 3).sum() + torch.amin(a) ** 2
                + (torch.tanh(joined) * joined).sum() + (gathered ** 3).sum()
                + (torch.softmax(out, 0) * out).sum())
        self.assertTrue(close(case["value"], loss.item()))
        g, hv = grad_and_hvp(loss, p, case["v"])
        self.compare("structural gradient", case["grad"], g)
        self.compare("structural Hessian-vector product", case["hvp"], hv)


def main():
    global EXPORT
    if len(sys.argv) != 2:
        print("usage: torch_double_backward_test.py PATH/TO/torch_double_backward_export",
              file=sys.stderr)
        return 2
    EXPORT = os.path.abspath(sys.argv[1])
    print(f"torch {torch.__version__} from {sys.executable}")
    return runner.run(__name__)


if __name__ == "__main__":
    sys.exit(main())
