#!/usr/bin/env python3
# End-to-end tests of the activations, dying_relu and relu_interactions examples: short runs with
# fixed seeds, asserting what the lecture says. Usage: examples_activations_test.py ACT DYING RELU
import math
import os
import re
import subprocess
import sys
import tempfile
import unittest

import runner  # tests/runner.py: the closing "N passed, M failed" line

EXES = {}  # name -> path, from argv in main()


def run_example(name, out, *args):
    r = subprocess.run([EXES[name], "--quick", "--seed", "1", "--out", out, *args],
                       capture_output=True, text=True, timeout=240)
    if r.returncode != 0:
        raise AssertionError(f"{name} failed ({r.returncode}): {r.stderr}")
    return r.stdout


def read_columns(path):
    """A write_columns file as {header name: [values]}."""
    with open(path) as f:
        header = f.readline().lstrip("#").split()
        rows = [[float(v) for v in line.split()] for line in f if line.strip()]
    return {h: [row[i] for row in rows] for i, h in enumerate(header)}


class ExampleTest(unittest.TestCase):
    name = None
    stdout = ""

    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory()
        cls.out = cls._tmp.name
        cls.stdout = run_example(cls.name, cls.out)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def data(self, filename):
        return read_columns(os.path.join(self.out, filename))

    def assert_pngs(self, *names):
        for n in names:
            path = os.path.join(self.out, n)
            self.assertTrue(os.path.exists(path), n)
            with open(path, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n", n)
            self.assertIn(f"wrote {os.path.abspath(path)}", self.stdout)


class Activations(ExampleTest):
    name = "activations"

    def curve(self, name):
        d = self.data("activations_curves.dat")
        return d["x"], d[name], d["d_" + name]

    def test_derivatives_follow_the_op_table(self):
        for x, s, ds in zip(*self.curve("sigmoid")):
            self.assertAlmostEqual(ds, s * (1 - s), places=12)  # sigma' = s (1 - s)
        for x, t, dt in zip(*self.curve("tanh")):
            self.assertAlmostEqual(dt, 1 - t * t, places=12)  # tanh' = 1 - tanh^2
        for x, y, dy in zip(*self.curve("relu")):
            self.assertEqual(dy, 1.0 if x > 0 else 0.0)  # relu'(0) = 0, as the notes take it
            self.assertEqual(y, max(0.0, x))
        for x, y, dy in zip(*self.curve("leaky_relu")):
            self.assertAlmostEqual(dy, 1.0 if x > 0 else 0.01, places=15)
        for x, y, dy in zip(*self.curve("prelu")):
            self.assertAlmostEqual(dy, 1.0 if x > 0 else 0.25, places=15)
        for x, y, dy in zip(*self.curve("elu")):
            self.assertAlmostEqual(dy, 1.0 if x > 0 else math.exp(x), places=12)  # alpha e^x
        for x, y, dy in zip(*self.curve("maxout")):
            self.assertAlmostEqual(y, max(x, -0.5 * x), places=15)
            self.assertAlmostEqual(dy, 1.0 if x > 0 else (0.25 if x == 0 else -0.5), places=15)

    def test_derivatives_match_finite_differences_of_the_curves(self):
        d = self.data("activations_curves.dat")
        xs = d["x"]
        for name in ["sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu", "maxout"]:
            for i in range(1, len(xs) - 1, 37):
                if abs(xs[i]) < 0.02:
                    continue  # the kink
                fd = (d[name][i + 1] - d[name][i - 1]) / (xs[i + 1] - xs[i - 1])
                self.assertAlmostEqual(d["d_" + name][i], fd, delta=1e-3, msg=f"{name} at {xs[i]}")

    def test_prelu_alpha_gets_a_gradient(self):
        self.assertIn("df/dalpha = -2 (= x on the negative side), df/dx = 0.25", self.stdout)
        self.assertRegex(self.stdout, r"prelu: learned alpha per layer \(mean\):( -?\d\.\d\d){6}")

    def table(self):
        rows = {}
        for line in self.stdout.splitlines():
            m = re.match(r"^(\w+)\s+(\d\.\d+)\s+(n/c|\d+)\s+[\d.]+$", line)
            if m:
                rows[m.group(1)] = (float(m.group(2)), m.group(3))
        return rows

    def test_sigmoid_does_not_converge_and_the_rest_do(self):
        rows = self.table()
        self.assertEqual(sorted(rows), sorted(["sigmoid", "tanh", "relu", "leaky_relu", "prelu",
                                               "elu", "maxout"]))
        acc, epochs = rows["sigmoid"]
        self.assertEqual(epochs, "n/c")
        self.assertLess(acc, 0.5)  # chance is 1/3
        for name, (acc, epochs) in rows.items():
            if name != "sigmoid":
                self.assertNotEqual(epochs, "n/c", name)
                self.assertGreaterEqual(acc, 0.9, name)
        curves = self.data("activations_spirals.dat")
        self.assertLess(max(curves["sigmoid"]), 0.5)  # never, not just at the end

    def test_pictures(self):
        self.assert_pngs("activations_curves.png", "activations_spirals.png")


class DyingRelu(ExampleTest):
    name = "dying_relu"

    def test_large_learning_rate_kills_relu_units(self):
        d = self.data("dying_relu_lr.dat")
        small = [d["lr0.05_layer%d" % l][-1] for l in (1, 2, 3)]
        big = [d["lr0.5_layer%d" % l][-1] for l in (1, 2, 3)]
        self.assertLess(max(small), 0.3)
        self.assertGreater(min(big), 0.5)
        self.assertGreater(sum(big) / 3, 0.75)

    def test_negative_bias_relu_stays_dead_leaky_and_elu_recover(self):
        d = self.data("dying_relu_bias.dat")
        # ReLU: layer 3 is dead from the first epoch to the last, the net stays at chance.
        self.assertEqual(set(d["relu_layer3"]), {1.0})
        self.assertLess(d["relu_accuracy"][-1], 0.45)
        # Leaky ReLU starts just as dead but comes back and learns.
        self.assertEqual(d["leaky_relu_layer3"][0], 1.0)
        self.assertLess(d["leaky_relu_layer3"][-1], 0.5)
        self.assertGreater(d["leaky_relu_accuracy"][-1], 0.9)
        # ELU: the negative side's gradient alpha e^x brings its units back almost at once.
        for l in (1, 2, 3):
            self.assertLess(d["elu_layer%d" % l][-1], 0.1)
        self.assertGreater(d["elu_accuracy"][-1], 0.9)

    def test_dead_relu_units_get_no_gradient(self):
        self.assertRegex(self.stdout, r"ReLU, biases -0.1\s+100%\s+100%\s+100%")
        self.assertRegex(self.stdout, r"Leaky ReLU 0.01, biases -0.1\s+0%\s+0%\s+0%")
        self.assertRegex(self.stdout, r"ELU, biases -0.1\s+0%\s+0%\s+0%")

    def test_pictures(self):
        self.assert_pngs("dying_relu.png")


class ReluInteractions(ExampleTest):
    name = "relu_interactions"

    def test_the_effect_of_a_depends_on_b(self):
        d = self.data("relu_interactions_node.dat")
        i1, i100 = d["B"].index(1.0), d["B"].index(-100.0)
        change = [d["relu_A2"][i] - d["relu_A1"][i] for i in (i1, i100)]
        self.assertEqual(change, [2.0, 0.0])  # f = 2A + 3B when positive, 0 when not
        self.assertEqual([d["relu_A1"][i1], d["relu_A1"][i100]], [5.0, 0.0])
        self.assertEqual([d["relu_dfdA"][i1], d["relu_dfdA"][i100]], [2.0, 0.0])
        # Leaky ReLU 0.3: A still matters when B = -100, at 0.3 times the slope.
        self.assertAlmostEqual(d["leaky_dfdA"][i100], 0.6, places=12)
        self.assertAlmostEqual(d["leaky_A2"][i100] - d["leaky_A1"][i100], 0.6, places=9)

    def test_bias_moves_the_kink(self):
        for b, below, above in [(7, -8, -6), (0, -1, 1), (-3, 2, 4)]:
            self.assertIn(f"b = {b:>2}: df/dA = 0 at A = {below}, 1 at A = {above}", self.stdout)

    def test_sum_of_relu_units_fits_the_curve(self):
        rmse = float(re.search(r"RMSE against the true curve (\d\.\d+)", self.stdout).group(1))
        self.assertLess(rmse, 0.15)
        d = self.data("relu_fit_curve.dat")
        units = [k for k in d if k.startswith("unit")]
        self.assertEqual(len(units), 8)
        # The fit is the units' sum plus one output bias.
        offsets = [f - sum(d[u][i] for u in units) for i, f in enumerate(d["fit"])]
        self.assertLess(max(offsets) - min(offsets), 1e-9)

    def test_fit_is_straight_between_kinks(self):
        d = self.data("relu_fit_curve.dat")
        kinks = self.data("relu_fit_kinks.dat")["x"]
        self.assertGreaterEqual(len(kinks), 3)
        xs, ys = d["x"], d["fit"]
        slopes = [(ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i]) for i in range(len(xs) - 1)]
        bends = 0
        for i in range(len(slopes) - 1):
            near_kink = any(xs[i] - 1e-9 <= k <= xs[i + 2] + 1e-9 for k in kinks)
            if abs(slopes[i + 1] - slopes[i]) > 1e-6:
                self.assertTrue(near_kink, f"the slope changes at x = {xs[i + 1]}, not at a kink")
                bends += 1
        self.assertGreater(bends, 0)

    def test_pictures(self):
        self.assert_pngs("relu_interactions_node.png", "relu_interactions_fit.png")


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: examples_activations_test.py ACTIVATIONS DYING_RELU RELU_INTERACTIONS")
    EXES.update(zip(["activations", "dying_relu", "relu_interactions"], sys.argv[1:4]))
    return runner.run(__name__)


if __name__ == "__main__":
    sys.exit(main())
