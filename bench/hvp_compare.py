#!/usr/bin/python3
"""hvp_compare's PyTorch peer: torch_compare's moons MLP (2-16-16-1 ReLU, 100 points, hinge + 1e-4
L2) written as a function of its parameters, timed for a plain gradient, for
torch.autograd.functional.hvp and for vhp. The driver is bench/hvp_compare.cpp, which starts it
under Debian's /usr/bin/python3 (python3-torch). One command per line on stdin, one reply line on
stdout:
  setup OMP BLAS SEED -> "ok"        threads, model, data and v; a short warm-up
  check               -> v.Hv        the product's figure, a check that it was computed
  grad N | hvp N | vhp N -> SECONDS  N calls, timed here
  quit
"""

import ctypes
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from torch_compare import moons  # the same rows as torch_compare's moons workload

SIZES = [2, 16, 16, 1]

try:
    _openblas = ctypes.CDLL("libopenblas.so.0")
except OSError:
    _openblas = None


class Model:
    def __init__(self, seed):
        torch.manual_seed(seed)
        layers = [torch.nn.Linear(a, b) for a, b in zip(SIZES, SIZES[1:])]
        self.params = tuple(p.detach().clone().requires_grad_()
                            for layer in layers for p in (layer.weight, layer.bias))
        x, y = moons(100, 0.1, np.random.default_rng(seed + 1))
        self.x = torch.from_numpy(x)
        self.y = torch.from_numpy(2 * y - 1).reshape(-1, 1)
        self.v = tuple(torch.randn(p.shape) for p in self.params)

    def loss(self, *params):
        h = self.x
        for k in range(0, len(params), 2):
            h = F.linear(h, params[k], params[k + 1])
            if k + 2 < len(params):
                h = torch.relu(h)
        reg = sum((p * p).sum() for p in params)
        return torch.relu(1 - self.y * h).mean() + 1e-4 * reg

    def grad(self):
        for p in self.params:
            p.grad = None
        self.loss(*self.params).backward()

    def hvp(self):
        return torch.autograd.functional.hvp(self.loss, self.params, self.v)[1]

    def vhp(self):
        return torch.autograd.functional.vhp(self.loss, self.params, self.v)[1]


def timed(call, n):
    t0 = time.perf_counter()
    for _ in range(n):
        call()
    return time.perf_counter() - t0


def main():
    model = None
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        try:
            if words[0] == "quit":
                break
            if words[0] == "setup":
                omp, blas, seed = int(words[1]), int(words[2]), int(words[3])
                torch.set_num_threads(omp)
                if _openblas is not None:
                    _openblas.openblas_set_num_threads(blas)
                model = Model(seed)
                for call in (model.grad, model.hvp, model.vhp):
                    timed(call, 50)
                reply = "ok"
            elif words[0] == "check":
                hv = model.hvp()
                reply = f"{sum((h * v).sum().item() for h, v in zip(hv, model.v)):.6g}"
            elif words[0] in ("grad", "hvp", "vhp"):
                reply = f"{timed(getattr(model, words[0]), int(words[1])):.9g}"
            else:
                raise ValueError(f"unknown command '{words[0]}'")
        except Exception as e:  # the driver prints it and stops
            reply = "error " + str(e).replace("\n", " ")
        sys.stdout.write(reply + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
