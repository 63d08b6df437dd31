#!/usr/bin/env python3
# End-to-end tests of the training examples: each --quick run, with a fixed seed, must show the
# lecture's outcome. Usage: examples_training_test.py LOGISTIC_REGRESSION MOONS FASHION_MNIST
import json
import math
import os
import re
import struct
import subprocess
import sys
import tempfile
import unittest

import runner  # tests/runner.py: the closing "N passed, M failed" line

EXES = {}  # name -> path, from argv in main()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def number(pattern, text):
    m = re.search(pattern, text)
    if m is None:
        raise AssertionError(f"{pattern!r} not in the output:\n{text}")
    return float(m.group(1))


class ExampleTest(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.dir = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def run_example(self, name, *args):
        r = subprocess.run([EXES[name], "--quick", "--out", self.dir, *args],
                           capture_output=True, text=True, timeout=240)
        self.assertEqual(r.returncode, 0, f"{name}: {r.stdout}{r.stderr}")
        return r.stdout, r.stderr

    def assert_png(self, filename):
        path = os.path.join(self.dir, filename)
        self.assertTrue(os.path.exists(path), f"{filename} was not written")
        with open(path, "rb") as f:
            self.assertEqual(f.read(8), PNG_MAGIC)
        self.assertGreater(os.path.getsize(path), 5000)

    def columns(self, filename):
        with open(os.path.join(self.dir, filename)) as f:
            return [[float(v) for v in line.split()] for line in f
                    if line.strip() and not line.startswith("#")]


class LogisticRegression(ExampleTest):
    def test_gradient_descent_fits_a_separating_line(self):
        out, err = self.run_example("logistic_regression", "--seed", "3")
        self.assertEqual(err, "")
        # Broadcasting: X (m, 2) w (2, 1) + b (1,) gives one z per row.
        self.assertIn("X (200, 2) times w (2, 1) plus b (1,) broadcast to (200, 1)", out)
        # backward's dw is the notes' 1/m X^T (y^ - y).
        backward = re.search(r"backward: +(dw = .*)", out).group(1)
        closed_form = re.search(r"1/m X\^T \(y\^ - y\): +(dw = .*)", out).group(1)
        self.assertEqual(backward, closed_form)

        # J starts at log 2 (w = 0 gives y^ = 0.5 everywhere) and falls at every step.
        cost = [row[1] for row in self.columns("logistic_regression_cost.dat")]
        self.assertAlmostEqual(cost[0], math.log(2), places=6)
        self.assertTrue(all(b < a for a, b in zip(cost, cost[1:])), "J rose somewhere")
        self.assertLess(cost[-1], 0.2)
        self.assertAlmostEqual(number(r"cost [\d.]+ -> ([\d.]+)", out), cost[-1], places=4)
        self.assertGreaterEqual(number(r"training accuracy ([\d.]+)", out), 0.97)

        # The printed line w.x + b = 0 puts the two classes on its two sides.
        w = re.search(r"w = \((\S+), (\S+)\)  b = (\S+)", out)
        w1, w2, b = (float(v) for v in w.groups())
        side = lambda p: w1 * p[0] + w2 * p[1] + b > 0
        zeros, ones = self.columns("logistic_regression_y0.dat"), self.columns(
            "logistic_regression_y1.dat")
        right = sum(not side(p) for p in zeros) + sum(side(p) for p in ones)
        self.assertGreaterEqual(right / (len(zeros) + len(ones)), 0.97)
        self.assert_png("logistic_regression.png")

    def test_a_relative_out_folder(self):
        # The default --out, build/examples-out, is relative: the pictures land inside it.
        r = subprocess.run([EXES["logistic_regression"], "--quick", "--out", "pictures"],
                           capture_output=True, text=True, timeout=240, cwd=self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(os.path.exists(os.path.join(self.dir, "pictures",
                                                    "logistic_regression.png")))

    def test_no_plots_draws_nothing(self):
        out, _ = self.run_example("logistic_regression", "--no-plots")
        self.assertIn("training accuracy", out)
        self.assertFalse(any(f.endswith(".png") for f in os.listdir(self.dir)))


class Moons(ExampleTest):
    def test_micrograd_demo_reaches_full_training_accuracy(self):
        out, err = self.run_example("moons", "--seed", "1")
        self.assertEqual(err, "")
        self.assertIn("337 parameters", out)  # 2*16+16 + 16*16+16 + 16+1
        self.assertIn("after 100 steps: training accuracy 100% (100 of 100 points)", out)
        # The learning rate decays as micrograd's 1.0 - 0.9 k / 100, and the loss falls.
        self.assertIn("step   0  lr 1.000", out)
        self.assertIn("step  99  lr 0.109", out)
        first = number(r"step   0 .*hinge loss ([\d.]+)", out)
        last = number(r"step  99 .*hinge loss ([\d.]+)", out)
        self.assertLess(last, first / 5)
        # The boundary drawn is the net's: every grid cell is a class, both classes appear, and
        # the class is the hinge score's sign (the value column is the score clipped to +-1).
        grid = self.columns("moons_grid.dat")
        self.assertEqual({row[2] for row in grid}, {0.0, 1.0})
        for x1, x2, c, score in grid:
            if abs(score) > 1e-5:
                self.assertEqual(c, 1.0 if score > 0 else 0.0, (x1, x2))
            self.assertLessEqual(abs(score), 1)
        self.assert_png("moons.png")


def read_safetensors_header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return n, json.loads(f.read(n))


class FashionMnist(ExampleTest):
    def test_quick_run_learns_and_saves_a_loadable_checkpoint(self):
        out, err = self.run_example("fashion_mnist", "--seed", "1")
        self.assertIn("10000 training and 2000 test images", out)
        self.assertIn("epoch 1/1", err)  # fit's progress, one line per epoch off a terminal
        test_accuracy = number(r"test accuracy ([\d.]+)", out)
        self.assertGreater(test_accuracy, 0.70)

        # The confusion matrix: a row per class, counts adding up to the test set.
        table = out.split("confusion matrix of the test set:\n")[1]
        names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot"]
        total = 0
        for name in names:
            row = re.search(r"^ *" + re.escape(name) + r"((?: +\d+){10}) +[\d.]+$", table, re.M)
            self.assertIsNotNone(row, f"no row for {name}:\n{table}")
            total += sum(int(v) for v in row.group(1).split())
        self.assertEqual(total, 2000)
        self.assertAlmostEqual(number(r"\naccuracy ([\d.]+) \(\d+ of 2000\)", table),
                               test_accuracy, places=3)

        # The checkpoint: safetensors with PyTorch's names and shapes, nothing else, and the
        # example loaded it back into a fresh net with the same test accuracy.
        path = os.path.join(self.dir, "fashion_mnist.safetensors")
        n, header = read_safetensors_header(path)
        metadata = header.pop("__metadata__")
        self.assertEqual(metadata["format"], "pt")
        self.assertAlmostEqual(float(metadata["test_accuracy"]), test_accuracy, places=4)
        shapes = {name: entry["shape"] for name, entry in header.items()}
        self.assertEqual(shapes, {
            "layers.0.weight": [256, 784], "layers.0.bias": [256],
            "layers.2.weight": [128, 256], "layers.2.bias": [128],
            "layers.4.weight": [10, 128], "layers.4.bias": [10],
        })
        self.assertTrue(all(e["dtype"] == "F32" for e in header.values()))
        self.assertEqual(os.path.getsize(path), 8 + n + 4 * 235146)
        self.assertEqual(number(r"loaded back: test accuracy ([\d.]+)", out), test_accuracy)
        self.assert_png("fashion_mnist.png")


def main():
    names = ["logistic_regression", "moons", "fashion_mnist"]
    if len(sys.argv) != 1 + len(names):
        print("usage: examples_training_test.py " + " ".join(n.upper() for n in names),
              file=sys.stderr)
        return 2
    EXES.update({n: os.path.abspath(p) for n, p in zip(names, sys.argv[1:])})
    return runner.run(__name__)


if __name__ == "__main__":
    sys.exit(main())
