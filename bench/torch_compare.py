#!/usr/bin/python3
"""torch_compare's PyTorch peer: the workloads of bench/torch_compare.hpp in PyTorch's Python API,
served over the line protocol described there (setup / run / eval / quit on stdin, one reply
line each on stdout). Run it with Debian's /usr/bin/python3, which has python3-torch; the
driver is bench/torch_compare.cpp, which starts it.

Threads: torch.set_num_threads sets the OpenMP threads (elementwise ops); OpenBLAS, which does
the matrix products, has its own pool, set here through openblas_set_num_threads in the
libopenblas.so.0 that torch loaded.
"""

import ctypes
import gzip
import math
import os
import sys
import time

import numpy as np
import torch

SPECS = {
    "xor": dict(sizes=[2] + [5] * 10 + [1], sigmoid=True, rows=4, loss="bce", opt="sgd", lr=0.1),
    "moons": dict(sizes=[2, 16, 16, 1], sigmoid=False, rows=100, loss="hinge_l2", opt="sgd", lr=0.1),
    "adam": dict(sizes=[2, 64, 64, 1], sigmoid=False, rows=256, loss="bce_logits", opt="adam", lr=1e-3),
    "fmnist": dict(sizes=[784, 256, 128, 10], sigmoid=False, rows=128, loss="ce", opt="adam", lr=1e-3),
}

FASHION_DIR = "/usr/share/datasets/fashion-mnist"

try:
    _openblas = ctypes.CDLL("libopenblas.so.0")
except OSError:
    _openblas = None


def set_threads(omp, blas):
    # TC_FLUSH_DENORMAL=1: subnormal floats flush to zero (bench/README.md).
    if os.environ.get("TC_FLUSH_DENORMAL") == "1":
        torch.set_flush_denormal(True)
    torch.set_num_threads(omp)
    if _openblas is not None:
        _openblas.openblas_set_num_threads(blas)


def make_model(spec):
    layers = []
    sizes = spec["sizes"]
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i + 2 < len(sizes):
            layers.append(torch.nn.ReLU())
    if spec["sigmoid"]:
        layers.append(torch.nn.Sigmoid())
    return torch.nn.Sequential(*layers)


def make_optimizer(spec, model):
    if spec["opt"] == "sgd":
        return torch.optim.SGD(model.parameters(), lr=spec["lr"])
    return torch.optim.Adam(model.parameters(), lr=spec["lr"])


def moons(n, noise, rng):
    """Two interleaving half circles, as sklearn.datasets.make_moons (class 0 the upper one)."""
    n_out, n_in = n // 2, n - n // 2
    t_out, t_in = np.linspace(0, math.pi, n_out), np.linspace(0, math.pi, n_in)
    x = np.concatenate([np.cos(t_out), 1 - np.cos(t_in)])
    y = np.concatenate([np.sin(t_out), 1 - np.sin(t_in) - 0.5])
    pts = np.stack([x, y], axis=1) + rng.normal(0, noise, size=(n, 2))
    labels = np.concatenate([np.zeros(n_out), np.ones(n_in)])
    return pts.astype(np.float32), labels.astype(np.float32)


class Steps:
    def __init__(self, spec, seed):
        torch.manual_seed(seed)
        self.spec = spec
        self.model = make_model(spec)
        self.opt = make_optimizer(spec, self.model)
        if spec["rows"] == 4:
            x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
            y = np.array([0, 1, 1, 0], dtype=np.float32)
        else:
            x, y = moons(spec["rows"], 0.1, np.random.default_rng(seed + 1))
        if spec["loss"] == "hinge_l2":
            y = 2 * y - 1
        self.x = torch.from_numpy(x)
        self.y = torch.from_numpy(y).reshape(-1, 1)

    def step(self):
        self.opt.zero_grad()
        out = self.model(self.x)
        loss_kind = self.spec["loss"]
        if loss_kind == "bce":
            loss = torch.nn.functional.binary_cross_entropy(out, self.y)
        elif loss_kind == "bce_logits":
            loss = torch.nn.functional.binary_cross_entropy_with_logits(out, self.y)
        else:  # micrograd's loss: mean hinge plus 1e-4 times the sum of squared parameters
            reg = sum((p * p).sum() for p in self.model.parameters())
            loss = torch.relu(1 - self.y * out).mean() + 1e-4 * reg
        loss.backward()
        self.opt.step()
        return loss

    def run(self, n):
        t0 = time.perf_counter()
        for _ in range(n):
            loss = self.step()
        return time.perf_counter() - t0, loss.item()

    def warm(self):
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.3:
            self.step()

    def eval(self):
        with torch.no_grad():
            out = self.model(self.x)
            predicted = out > 0.5 if self.spec["sigmoid"] else out > 0
            return (predicted == (self.y > 0)).double().mean().item()


def read_idx(path, header):
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=header)


_fashion = {}


def fashion(split):
    if split not in _fashion:
        prefix = "train" if split == "train" else "t10k"
        images = read_idx(f"{FASHION_DIR}/{prefix}-images-idx3-ubyte.gz", 16)
        labels = read_idx(f"{FASHION_DIR}/{prefix}-labels-idx1-ubyte.gz", 8)
        x = torch.from_numpy(images.reshape(-1, 784).astype(np.float32) / 255.0)
        y = torch.from_numpy(labels.astype(np.int64))
        _fashion[split] = (x, y)
    return _fashion[split]


class Fashion:
    """Shuffled batches by torch.randperm and index_select, as the LibTorch peer takes them."""

    def __init__(self, spec, seed):
        torch.manual_seed(seed)
        self.spec = spec
        self.model = make_model(spec)
        self.opt = make_optimizer(spec, self.model)

    def epoch(self, max_batches=-1):
        x, y = fashion("train")
        rows, batch = x.shape[0], self.spec["rows"]
        order = torch.randperm(rows)
        total, count = 0.0, 0
        for i in range(0, rows, batch):
            idx = order[i:i + batch]
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)
            self.opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(self.model(xb), yb)
            loss.backward()
            self.opt.step()
            total += loss.item()
            count += 1
            if count == max_batches:
                break
        return total / max(count, 1)

    def run(self, n):
        t0 = time.perf_counter()
        for _ in range(n):
            loss = self.epoch()
        return time.perf_counter() - t0, loss

    def warm(self):
        self.epoch(20)

    def eval(self):
        x, y = fashion("test")
        with torch.no_grad():
            return (self.model(x).argmax(1) == y).double().mean().item()


def make(name, seed):
    spec = SPECS[name]
    return Fashion(spec, seed) if name == "fmnist" else Steps(spec, seed)


def main():
    session = None
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        cmd = words[0]
        try:
            if cmd == "quit":
                break
            if cmd == "setup":
                name, omp, blas, seed = words[1], int(words[2]), int(words[3]), int(words[4])
                if name not in SPECS:
                    raise ValueError(f"unknown workload {name}")
                session = None
                set_threads(omp, blas)
                make(name, seed ^ 0x5EED).warm()
                session = make(name, seed)
                reply = "ok"
            elif cmd == "run":
                seconds, loss = session.run(int(words[1]))
                reply = f"{seconds:.9g} {loss:.9g}"
            elif cmd == "eval":
                reply = f"{session.eval():.9g}"
            else:
                raise ValueError(f"unknown command '{cmd}'")
        except Exception as e:  # the driver prints it and stops
            reply = "error " + str(e).replace("\n", " ")
        sys.stdout.write(reply + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
