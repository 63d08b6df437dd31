#!/usr/bin/env python3
# End-to-end tests of the lecture examples deep_xor, vanishing_gradient and zero_init: short runs
# with fixed seeds that must show what the notes say. Usage: examples_lecture_test.py DEEP_XOR
# VANISHING_GRADIENT ZERO_INIT
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest

import runner  # tests/runner.py: the closing "N passed, M failed" line

EXES = {}  # name -> path, set from argv in main()
QUICK_SECONDS = 30  # a --quick run takes under a second in a release build


def floats(text):
    return [float(x) for x in re.findall(r"[-+]?\d+\.?\d*(?:e[-+]?\d+)?", text)]


class ExampleTest(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.dir = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def run_example(self, name, *args, limit=QUICK_SECONDS):
        """Runs an example into the scratch directory; checks exit code 0, no stderr and the
        time taken. Returns its standard output."""
        start = time.monotonic()
        r = subprocess.run([EXES[name], "--out", self.dir, *args], capture_output=True,
                           text=True, timeout=120)
        seconds = time.monotonic() - start
        self.assertEqual(r.returncode, 0, f"{name} {args}: {r.stderr}")
        self.assertEqual(r.stderr, "")
        self.assertLess(seconds, limit, f"{name} {args} took {seconds:.1f} s")
        return r.stdout

    def line(self, out, start):
        """The one line of `out` that starts with `start`."""
        found = [l for l in out.splitlines() if l.startswith(start)]
        self.assertEqual(len(found), 1, f"no single line starting with {start!r} in:\n{out}")
        return found[0]

    def assert_pictures(self, out, names):
        """The run ends with one "wrote PATH" line per picture, and each is a real PNG."""
        tail = out.splitlines()[-len(names):]
        self.assertEqual(tail, [f"wrote {os.path.join(os.path.abspath(self.dir), n)}"
                                for n in names])
        for n in names:
            with open(os.path.join(self.dir, n), "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n", n)
            self.assertGreater(os.path.getsize(os.path.join(self.dir, n)), 5000, n)


class DeepXor(ExampleTest):
    def accuracy_table(self, out):
        return out[out.index("accuracy per seed"):out.index("The lecture:")]

    def test_sigmoid_stays_at_one_half_relu_solves_it(self):
        out = self.run_example("deep_xor", "--quick", "--seed", "1")
        self.assertIn("W1 2x5, W2..W10 5x5, W11 5x1", out)
        for act in ["sigmoid", "relu"]:
            row = self.line(self.accuracy_table(out), act + " ")
            *accuracies, solved, seeds = floats(row)
            self.assertEqual(len(accuracies), 3, row)  # --quick tries 3 seeds
            self.assertEqual(seeds, 3)
            self.assertEqual(solved, sum(a == 1.0 for a in accuracies), row)
            if act == "sigmoid":
                self.assertEqual(solved, 0, row)
                self.assertTrue(all(a < 1 for a in accuracies), row)
            else:
                self.assertGreaterEqual(solved, 1, row)
        self.assertIn("The lecture: accuracy 0.5 with sigmoid, 1.0 with ReLU.", out)

    def test_first_layer_gradient_vanishes_with_sigmoid_only(self):
        out = self.run_example("deep_xor", "--quick", "--seed", "1")
        # The table of the first step: W1's sigmoid gradient is orders below W11's.
        w1, w11 = floats(self.line(out, "W1 ")), floats(self.line(out, "W11 "))
        self.assertLess(w1[1], w11[1] / 100)  # sigmoid column
        self.assertGreater(w1[2], w11[2] / 100)  # relu column
        # The same for every seed: ||dL/dW1|| / ||dL/dW11||.
        ratios = out[out.index("per seed:"):]
        sigmoid = floats(self.line(ratios, "sigmoid "))
        relu = floats(self.line(ratios, "relu "))
        self.assertEqual(len(sigmoid), 3)
        self.assertTrue(all(r < 1e-2 for r in sigmoid), sigmoid)
        self.assertTrue(all(r > 1e-2 for r in relu), relu)

    def test_pictures(self):
        out = self.run_example("deep_xor", "--quick")
        self.assert_pictures(out, ["deep_xor_loss.png", "deep_xor_grad.png"])
        with open(os.path.join(self.dir, "deep_xor_grad.dat")) as f:
            rows = [l for l in f if not l.startswith("#")]
        self.assertEqual(len(rows), 11)  # one per weight matrix

    def test_default_run_is_the_readme_demo(self):
        # The README's demo: 5 seeds, 10000 steps, in a few seconds (more under sanitizers).
        out = self.run_example("deep_xor", "--no-plots", limit=60)
        self.assertIn("for 10000 steps; seeds 1 to 5", out)
        table = self.accuracy_table(out)
        self.assertIn("0 of 5 solved", self.line(table, "sigmoid "))
        self.assertNotIn(" 0 of 5", self.line(table, "relu "))
        self.assertNotIn("wrote", out)
        self.assertEqual(os.listdir(self.dir), [])


class VanishingGradient(ExampleTest):
    def test_sigmoid_gradient_shrinks_with_depth(self):
        out = self.run_example("vanishing_gradient", "--quick", "--seed", "1")
        depths = floats(self.line(out, "layers "))
        self.assertEqual(depths, list(range(2, 11)))
        table = out[out.index("at the first step"):out.index("The 10-layer nets")]
        sigmoid = floats(self.line(table, "sigmoid "))
        self.assertLess(sigmoid[-1], 1e-3)  # 10 layers: W1 gets < 1/1000 of W10's
        self.assertLess(sigmoid[-1], sigmoid[0] / 100)
        for act in ["tanh", "relu"]:
            row = floats(self.line(table, act + " "))
            self.assertTrue(all(0.1 < r < 10 for r in row), f"{act}: {row}")

    def test_through_training_the_deep_sigmoid_net_stalls(self):
        out = self.run_example("vanishing_gradient", "--quick", "--seed", "1")
        medians = out[out.index("median ||dL/dW|| over the steps"):]
        w1 = {act: floats(self.line(medians, act + " "))[0] for act in ["sigmoid", "tanh", "relu"]}
        self.assertLess(w1["sigmoid"], 1e-4)
        self.assertGreater(w1["tanh"], 100 * w1["sigmoid"])
        self.assertGreater(w1["relu"], 100 * w1["sigmoid"])

    def test_pictures(self):
        out = self.run_example("vanishing_gradient", "--quick")
        self.assert_pictures(out, ["vanishing_gradient_depth.png",
                                   "vanishing_gradient_heatmap.png"])


class ZeroInit(ExampleTest):
    def units(self, out):
        """The (w, b, v) of each hidden unit, zero init and random init."""
        rows = [floats(self.line(out, f"{j} ")) for j in range(1, 5)]
        return [r[1:4] for r in rows], [r[4:7] for r in rows]

    def test_zero_init_units_are_identical_random_ones_distinct(self):
        out = self.run_example("zero_init", "--quick", "--seed", "1")
        zero, random = self.units(out)
        for unit in zero[1:]:
            for a, b in zip(unit, zero[0]):
                self.assertAlmostEqual(a, b, delta=1e-6)
        self.assertGreater(abs(zero[0][0]), 0.1, "the zero-init units did learn, in lockstep")
        for i in range(4):
            for j in range(i):
                self.assertGreater(max(abs(a - b) for a, b in zip(random[i], random[j])), 0.1)

    def test_one_unit_cannot_fit_the_bowl(self):
        out = self.run_example("zero_init", "--quick", "--seed", "2")
        zero_mse, random_mse = floats(self.line(out, "MSE after training:"))
        self.assertGreater(zero_mse, 5 * random_mse)
        self.assertIn("(zero init)", self.line(out, "largest difference"))

    def test_pictures(self):
        out = self.run_example("zero_init", "--quick")
        self.assert_pictures(out, ["zero_init.png"])


def main():
    if len(sys.argv) != 4:
        print("usage: examples_lecture_test.py DEEP_XOR VANISHING_GRADIENT ZERO_INIT",
              file=sys.stderr)
        return 2
    for name, path in zip(["deep_xor", "vanishing_gradient", "zero_init"], sys.argv[1:]):
        EXES[name] = os.path.abspath(path)
    return runner.run(__name__)


if __name__ == "__main__":
    sys.exit(main())
