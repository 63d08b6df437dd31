#!/usr/bin/env python3
# End-to-end tests of the tapegrad program: every subcommand on real outputs, and every error
# (exit code 2, one message, no file left behind). Usage: cli_test.py PATH/TO/tapegrad
import json
import math
import os
import re
import resource
import shlex
import stat
import subprocess
import sys
import unittest

import runner  # tests/runner.py: the closing "N passed, M failed" line
import wrapper  # tests/wrapper.py: tapegrad inside $TAPEGRAD_WRAPPER (valgrind), if set

TAPEGRAD = None  # set from argv in main()
SOURCE_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CS231N = "q = x + y; f = q * z"
CS231N_INPUTS = ["x=-2", "y=5", "z=-4"]


def run(*args, stdin=None, cwd=None):
    return wrapper.run(TAPEGRAD, args, input=stdin, cwd=cwd, timeout=60)


class CliTest(wrapper.TempDirTest):
    def ok(self, *args, stdin=None):
        r = run(*args, stdin=stdin, cwd=self.dir)
        self.assertEqual(r.returncode, 0, f"{args}: {r.stderr}")
        self.assertEqual(r.stderr, "")
        return r.stdout

    def fails(self, *args, message, stdin=None):
        """Runs a bad command: exit code 2, nothing on stdout, `message` on stderr, and no
        file written into the scratch directory."""
        before = sorted(os.listdir(self.dir))
        r = run(*args, stdin=stdin, cwd=self.dir)
        self.assertEqual(r.returncode, 2, f"{args}: {r.stdout}{r.stderr}")
        self.assertEqual(r.stdout, "")
        self.assertIn(message, r.stderr)
        self.assertEqual(sorted(os.listdir(self.dir)), before, "a file was left behind")
        return r.stderr


class Grad(CliTest):
    def test_cs231n_text(self):
        self.assertEqual(self.ok("grad", CS231N, *CS231N_INPUTS),
                         "f = -12\ndf/dx = -4\ndf/dy = -4\ndf/dz = 3\n")

    def test_cs231n_json(self):
        out = self.ok("grad", "--json", CS231N, *CS231N_INPUTS)
        self.assertEqual(json.loads(out), {"value": -12, "grad": {"x": -4, "y": -4, "z": 3}})
        self.assertEqual(out, '{"value": -12, "grad": {"x": -4, "y": -4, "z": 3}}\n')

    def test_order_2_prints_every_second_partial(self):
        # f = x^2 y + sigmoid(x): d²f/dx² = 2y + σ(1 - σ)(1 - 2σ), d²f/dx dy = 2x, d²f/dy² = 0
        out = self.ok("grad", "--order", "2", "f = x^2 * y + sigmoid(x)", "x=1", "y=3")
        lines = out.splitlines()
        # Note [Digits shown]: 4 significant digits as grad's other lines; --json has them all
        self.assertEqual(lines[0:3], ["f = 3.731", "df/dx = 6.197", "df/dy = 1"])
        s = 1 / (1 + math.exp(-1))
        d2x = 6 + s * (1 - s) * (1 - 2 * s)
        self.assertEqual(lines[3:], [f"d²f/dx² = {d2x:.4g}", "d²f/dx dy = 2", "d²f/dy dx = 2",
                                     "d²f/dy² = 0"])
        doc = json.loads(self.ok("grad", "--order", "2", "--json", "f = x^2 * y + sigmoid(x)",
                                 "x=1", "y=3"))
        self.assertAlmostEqual(doc["hessian"]["x"]["x"], d2x, places=13)
        self.assertEqual(doc["hessian"]["x"]["y"], 2)

    def test_order_2_json_has_the_hessian_by_input_names(self):
        out = self.ok("grad", "--order", "2", "--json", CS231N, *CS231N_INPUTS)
        doc = json.loads(out)
        self.assertEqual(doc["grad"], {"x": -4, "y": -4, "z": 3})
        # f = (x + y) z: only the mixed partials with z are nonzero
        self.assertEqual(doc["hessian"], {"x": {"x": 0, "y": 0, "z": 1},
                                          "y": {"x": 0, "y": 0, "z": 1},
                                          "z": {"x": 1, "y": 1, "z": 0}})
        self.assertEqual(list(doc["hessian"]), ["x", "y", "z"])  # program order
        # without --order 2 there is no "hessian"
        self.assertNotIn("hessian", json.loads(self.ok("grad", "--json", CS231N, *CS231N_INPUTS)))

    def test_order_2_relu_kink_is_0_and_nan_is_null(self):
        doc = json.loads(self.ok("grad", "--order", "2", "--json", "f = relu(x) * x", "x=0"))
        self.assertEqual(doc["hessian"], {"x": {"x": 0}})  # relu'' = 0 at the kink: 2 relu'(0)
        doc = json.loads(self.ok("grad", "--order", "2", "--json", "f = sqrt(x)", "x=0"))
        self.assertEqual(doc["hessian"], {"x": {"x": None}})

    def test_order_other_than_1_or_2_is_refused(self):
        self.fails("grad", "--order", "3", "f = x", "x=1", message="--order")

    def test_json_inputs_in_order_of_first_appearance(self):
        out = self.ok("grad", "--json", "a = z * x; b = a + y", "x=1", "y=2", "z=3")
        self.assertEqual(list(json.loads(out)["grad"]), ["z", "x", "y"])

    def test_json_numbers_round_trip(self):
        out = self.ok("grad", "--json", "f = x * 0.1 + exp(x)", "x=3")
        doc = json.loads(out)
        self.assertEqual(doc["value"], 3 * 0.1 + math.exp(3))
        self.assertEqual(doc["grad"]["x"], 0.1 + math.exp(3))

    def test_json_nan_and_infinity_are_null(self):
        self.assertEqual(json.loads(self.ok("grad", "--json", "f = log(x)", "x=-1")),
                         {"value": None, "grad": {"x": -1}})
        self.assertEqual(json.loads(self.ok("grad", "--json", "f = 1 / x", "x=0")),
                         {"value": None, "grad": {"x": None}})
        self.assertIn("null", self.ok("grad", "--help"))

    def test_sigmoid_neuron(self):
        doc = json.loads(self.ok("grad", "--json", "f = sigmoid(w0*x0 + w1*x1 + w2)",
                                 "w0=2", "x0=-1", "w1=-3", "x1=-2", "w2=-3"))
        self.assertAlmostEqual(doc["value"], 0.7310585786, places=9)
        self.assertAlmostEqual(doc["grad"]["w0"], -0.1966119332, places=9)
        self.assertAlmostEqual(doc["grad"]["x1"], -0.5898357997, places=9)

    def test_one_rule_for_digits_json_in_full(self):
        # Note [Digits shown] (autograd/include/tapegrad/format.hpp): grad, step and the page
        # write 4 significant digits (whole numbers whole); --json keeps every digit.
        program = "f = x / 3 + 70000"
        self.assertEqual(self.ok("grad", program, "x=1"), "f = 70000\ndf/dx = 0.3333\n")
        self.assertEqual(self.ok("grad", "f = x / 3", "x=1"), "f = 0.3333\ndf/dx = 0.3333\n")
        self.assertEqual(self.ok("grad", "f = x * 70000", "x=1"), "f = 70000\ndf/dx = 70000\n")
        self.assertTrue(self.ok("step", "f = x / 3", "x=1").endswith(
            "gradients\n  df/dx = 0.3333\n"))
        doc = json.loads(self.ok("grad", "--json", "f = x / 3", "x=1"))
        self.assertEqual(doc, {"value": 1 / 3, "grad": {"x": 1 / 3}})

    def test_precedence_and_functions(self):
        value = lambda program, *inputs: json.loads(
            self.ok("grad", "--json", program, *inputs))["value"]
        self.assertEqual(value("f = -x^2", "x=3"), -9)
        self.assertEqual(value("f = 2 ** 3 ** 2"), 512)
        self.assertEqual(value("f = leaky_relu(x, 0.5) + relu(x) + max(x, -3)", "x=-2"), -3)
        self.assertEqual(value("f = .5 + 1e-3 - -0.5"), 1.001)

    def test_rebinding_and_bare_output(self):
        self.assertEqual(self.ok("grad", "x = x * 2\nx = x + 1\nx * x", "x=3"),
                         "out = 49\ndout/dx = 28\n")
        self.assertEqual(self.ok("grad", "x = x * 2; x = x + 1", "x=3"),
                         "x'' = 7\ndx''/dx = 2\n")

    def test_many_rebindings(self):
        program = "x = x * 1 + 1\n" * 70000  # about 1 MB
        self.assertEqual(self.ok("grad", "-f", "-", "x=0", stdin=program),
                         "x'70000 = 70000\ndx'70000/dx = 1\n")

    def test_program_from_a_file_and_from_stdin(self):
        program = "# CS231n\nq = x + y  # sum\n\nf = q * z\n"
        with open(self.path("circuit.txt"), "w") as f:
            f.write(program)
        expected = "f = -12\ndf/dx = -4\ndf/dy = -4\ndf/dz = 3\n"
        self.assertEqual(self.ok("grad", "-f", "circuit.txt", *CS231N_INPUTS), expected)
        self.assertEqual(self.ok("grad", "-f", "-", *CS231N_INPUTS, stdin=program), expected)

    def test_a_program_starting_with_minus_goes_after_double_dash(self):
        self.assertEqual(self.ok("grad", "--", "-x^2", "x=3"), "out = -9\ndout/dx = -6\n")

    def test_deep_nesting(self):
        n = 100000
        with open(self.path("deep.txt"), "w") as f:
            f.write("f = " + "(" * n + "x" + ")" * n + " * 2")
        self.assertEqual(json.loads(self.ok("grad", "--json", "-f", "deep.txt", "x=3")),
                         {"value": 6, "grad": {"x": 2}})
        with open(self.path("calls.txt"), "w") as f:
            f.write("f = " + "tanh(" * n + "x" + ")" * n)
        doc = json.loads(self.ok("grad", "--json", "-f", "calls.txt", "x=0.5"))
        self.assertGreater(doc["value"], 0)
        with open(self.path("unclosed.txt"), "w") as f:
            f.write("f = " + "(" * n + "x")
        err = self.fails("grad", "-f", "unclosed.txt", "x=1",
                         message=f"error: line 1, column {n + 4}: this '(' is never closed")
        self.assertLess(len(err), 400)  # a window around the column, not the whole line

    def test_a_1mb_program_on_stdin(self):
        lines = ["v0 = x"]
        size, value, slope = 7, 0.5, 1.0
        while size < (1 << 20):
            i = len(lines)
            lines.append(f"v{i} = v{i - 1} * 0.99 + x / 4")
            size += len(lines[-1]) + 1
            value, slope = value * 0.99 + 0.125, slope * 0.99 + 0.25
        doc = json.loads(self.ok("grad", "--json", "-f", "-", "x=0.5", stdin="\n".join(lines)))
        self.assertAlmostEqual(doc["value"], value, places=6)
        self.assertAlmostEqual(doc["grad"]["x"], slope, places=6)


class Step(CliTest):
    def test_cs231n_lines_and_final_graph(self):
        out = self.ok("step", CS231N, *CS231N_INPUTS, "-o", "cs231n.svg")
        self.assertEqual(out, """forward
  x = -2
  y = 5
  z = -4
  q = x + y = 3
  f = q * z = -12
backward
  step 1: f = q * z
    df/df = 1
    df/dq = df/df · ∂f/∂q = 1 · -4 = -4
    df/dz = df/df · ∂f/∂z = 1 · 3 = 3
  step 2: q = x + y
    df/dx = df/dq · ∂q/∂x = -4 · 1 = -4
    df/dy = df/dq · ∂q/∂y = -4 · 1 = -4
gradients
  df/dx = -4
  df/dy = -4
  df/dz = 3
graph written to cs231n.svg
""")
        with open(self.path("cs231n.svg")) as f:
            self.assertIn("<svg", f.read())

    def test_a_fork_accumulates_and_constants_are_named(self):
        out = self.ok("step", "c = 3\nf = x * x * c", "x=2")
        self.assertIn("  c = 3\n", out)
        self.assertIn("+=", out)  # x feeds the product twice
        self.assertTrue(out.endswith("gradients\n  df/dx = 12\n"), out)

    def test_rebinding_is_shown_with_primes(self):
        out = self.ok("step", "x = x * 2; f = x + 1", "x=3")
        self.assertIn("  x' = x * 2 = 6\n", out)
        self.assertIn("  f = x' + 1 = 7\n", out)

    def test_frames_one_per_step_plus_the_forward_pass(self):
        out = self.ok("step", "q = x + y; f = q * z; g = sigmoid(f) * q", *CS231N_INPUTS,
                      "--frames", "frames/sub")
        steps = len(re.findall(r"^  step \d+: ", out, re.M))
        self.assertEqual(steps, 4)
        frames = sorted(os.listdir(self.path("frames", "sub")))
        self.assertEqual(frames, [f"step-{i:03}.svg" for i in range(steps + 1)])
        self.assertIn(f"{steps + 1} frames written to frames/sub\n", out)
        contents = set()
        for name in frames:
            with open(self.path("frames", "sub", name)) as f:
                text = f.read()
            self.assertIn("<svg", text)
            contents.add(text)
        self.assertEqual(len(contents), len(frames))  # each frame shows a different state

    def test_frames_and_values_style_graph(self):
        out = self.ok("step", CS231N, *CS231N_INPUTS, "--frames", "fr", "--style", "values",
                      "-o", "final.png")
        self.assertTrue(out.endswith("3 frames written to fr\ngraph written to final.png\n"))
        self.assertEqual(len(os.listdir(self.path("fr"))), 3)
        with open(self.path("final.png"), "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_no_steps_when_the_output_is_a_constant(self):
        out = self.ok("step", "f = 2 * 3")
        self.assertIn("no steps", out)

    def test_order_2_steps_through_the_second_backward(self):
        # f = (xy)^2: the first backward's nodes evaluated forward, then one second backward per
        # input, ending in its row of second partials: 2y² = 18, 4xy = 24, 2x² = 8
        out = self.ok("step", "--order", "2", "q = x * y; f = q * q", "x=2", "y=3")
        self.assertEqual(out, """forward
  x = 2
  y = 3
  q = x * y = 6
  f = q * q = 36
first backward, recorded: its nodes evaluated forward
  t5 = 1 * q = 6   (∂f/∂q · upstream)
  t6 = 1 * q = 6   (∂f/∂q · upstream)
  t7 = t5 + t6 = 12   (Σ ∂f/∂q)
  f_x = t7 * y = 36   (∂q/∂x · upstream)
  f_y = t7 * x = 24   (∂q/∂y · upstream)
gradients
  df/dx = f_x = 36
  df/dy = f_y = 24
second backward, from df/dx
  step 1: f_x = t7 * y
    df_x/df_x = 1
    df_x/dt7 = df_x/df_x · ∂f_x/∂t7 = 1 · 3 = 3
    df_x/dy = df_x/df_x · ∂f_x/∂y = 1 · 12 = 12
  step 2: t7 = t5 + t6
    df_x/dt5 = df_x/dt7 · ∂t7/∂t5 = 3 · 1 = 3
    df_x/dt6 = df_x/dt7 · ∂t7/∂t6 = 3 · 1 = 3
  step 3: t6 = 1 * q
    df_x/dq = df_x/dt6 · ∂t6/∂q = 3 · 1 = 3
  step 4: t5 = 1 * q
    df_x/dq += df_x/dt5 · ∂t5/∂q = 3 · 1 = 3, so df_x/dq = 6
  step 5: q = x * y
    df_x/dx = df_x/dq · ∂q/∂x = 6 · 3 = 18
    df_x/dy += df_x/dq · ∂q/∂y = 6 · 2 = 12, so df_x/dy = 24
  d²f/dx² = 18
  d²f/dx dy = 24
second backward, from df/dy
  step 1: f_y = t7 * x
    df_y/df_y = 1
    df_y/dt7 = df_y/df_y · ∂f_y/∂t7 = 1 · 2 = 2
    df_y/dx = df_y/df_y · ∂f_y/∂x = 1 · 12 = 12
  step 2: t7 = t5 + t6
    df_y/dt5 = df_y/dt7 · ∂t7/∂t5 = 2 · 1 = 2
    df_y/dt6 = df_y/dt7 · ∂t7/∂t6 = 2 · 1 = 2
  step 3: t6 = 1 * q
    df_y/dq = df_y/dt6 · ∂t6/∂q = 2 · 1 = 2
  step 4: t5 = 1 * q
    df_y/dq += df_y/dt5 · ∂t5/∂q = 2 · 1 = 2, so df_y/dq = 4
  step 5: q = x * y
    df_y/dx += df_y/dq · ∂q/∂x = 4 · 3 = 12, so df_y/dx = 24
    df_y/dy = df_y/dq · ∂q/∂y = 4 · 2 = 8
  d²f/dy dx = 24
  d²f/dy² = 8
""")
        # the same partials as grad --order 2 prints
        grad = self.ok("grad", "--order", "2", "q = x * y; f = q * q", "x=2", "y=3")
        partials = [line.strip() for line in out.splitlines() if line.startswith("  d²")]
        self.assertEqual(partials, grad.splitlines()[3:])

    def test_order_2_sigmoid_is_the_closed_form(self):
        # σ'' = σ(1 - σ)(1 - 2σ), the chain rule through the nodes σ' = σ(1 - σ) recorded
        out = self.ok("step", "--order", "2", "f = sigmoid(x)", "x=0.5")
        s = 1 / (1 + math.exp(-0.5))
        self.assertIn("  t5 = f * t4 = 0.235   (∂f/∂x)\n", out)
        self.assertTrue(out.endswith(f"  d²f/dx² = {s * (1 - s) * (1 - 2 * s):.4g}\n"), out)

    def test_order_2_of_a_linear_function_has_no_second_steps(self):
        out = self.ok("step", "--order", "2", "f = 2 * x + y", "x=1", "y=2")
        self.assertIn("gradients\n  df/dx = f_x = 2\n  df/dy = 1\n", out)  # the seed: unnamed
        self.assertIn("second backward, from df/dy\n  (no steps: df/dy depends on no input)\n",
                      out)
        self.assertTrue(out.endswith("  d²f/dy dx = 0\n  d²f/dy² = 0\n"), out)

    def test_order_2_draws_nothing_and_order_3_is_refused(self):
        self.fails("step", "--order", "2", "-o", "g.svg", CS231N, *CS231N_INPUTS,
                   message="step --order 2 prints the second backward as text")
        self.fails("step", "--order", "2", "--frames", "fr", CS231N, *CS231N_INPUTS,
                   message="-o and --frames draw the first")
        self.fails("step", "--order", "3", CS231N, *CS231N_INPUTS, message="--order")


class Dot(CliTest):
    def test_dot_on_stdout(self):
        out = self.ok("dot", CS231N, *CS231N_INPUTS)
        self.assertTrue(out.startswith("digraph"), out[:50])
        self.assertIn("-12", out)  # the output's value
        values = self.ok("dot", CS231N, *CS231N_INPUTS, "--style", "values")
        self.assertTrue(values.startswith("digraph"))
        self.assertNotEqual(values, out)

    def test_dot_backward(self):
        # Issue 15: the backward pass recorded with create_graph, drawn: forward muted, each
        # backward node named by its rule, one box per gradient, valued as grad prints them.
        out = self.ok("dot", "--backward", CS231N, *CS231N_INPUTS)
        self.assertTrue(out.startswith("digraph"), out[:50])
        self.assertIn("∂f/∂q · upstream", out)
        self.assertIn("∂f/∂z · upstream", out)
        for name, grad in [("x", "-4"), ("y", "-4"), ("z", "3")]:
            self.assertRegex(out, rf'n\d+ -> grad\d\t\[color=darkred,\s+label=<<font '
                                  rf'color="darkgreen">{grad}</font>>\]')
            self.assertIn(f'label="∂f/∂{name}"', out)
        self.assertIn("fontcolor=gray70", out)
        with open(os.path.join(SOURCE_ROOT, "tests", "golden", "cs231n_backward.dot")) as f:
            self.assertEqual(out, f.read())  # the library's golden drawing, through the CLI
        self.assertNotEqual(out, self.ok("dot", CS231N, *CS231N_INPUTS))
        self.assertEqual(self.ok("dot", "--backward", "f = sigmoid(x) * x", "x=0.5", "-o",
                                 "b.svg"), "graph written to b.svg\n")
        with open(self.path("b.svg")) as f:
            self.assertIn("<svg", f.read())
        self.fails("dot", "--backward", "--style", "values", CS231N, *CS231N_INPUTS,
                   message="graph: the backward pass is drawn in the lecture style only")
        self.fails("dot", "--backward", CS231N, *CS231N_INPUTS, "-o", "g.svg",
                   "--style", "values",
                   message="graph: the backward pass is drawn in the lecture style only")

    def test_dot_to_files_by_extension(self):
        stdout_dot = self.ok("dot", CS231N, *CS231N_INPUTS)
        self.assertEqual(self.ok("dot", CS231N, *CS231N_INPUTS, "-o", "g.dot"),
                         "graph written to g.dot\n")
        with open(self.path("g.dot")) as f:
            self.assertEqual(f.read(), stdout_dot)
        self.ok("dot", CS231N, *CS231N_INPUTS, "-o", "g.svg")
        with open(self.path("g.svg")) as f:
            self.assertIn("<svg", f.read())
        self.ok("dot", CS231N, *CS231N_INPUTS, "-o", "g.png")
        with open(self.path("g.png"), "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_missing_directories_of_an_output_are_created(self):
        # Issue 13: as mkdir -p would, for dot, step and html alike.
        self.assertEqual(self.ok("dot", CS231N, *CS231N_INPUTS, "-o", "graphs/cs231n/g.svg"),
                         "graph written to graphs/cs231n/g.svg\n")
        self.assertEqual(os.listdir(self.path("graphs", "cs231n")), ["g.svg"])
        self.ok("step", CS231N, *CS231N_INPUTS, "-o", "steps/g.dot")
        self.ok("html", CS231N, *CS231N_INPUTS, "-o", "pages/p.html")
        self.assertTrue(os.path.isfile(self.path("steps", "g.dot")))
        self.assertTrue(os.path.isfile(self.path("pages", "p.html")))


class Errors(CliTest):
    def test_syntax_error_with_caret(self):
        err = self.fails("grad", "q = x * ", "x=1", message="")
        self.assertEqual(err, "error: line 1, column 9: expected an expression after '*'\n"
                              "  q = x * \n"
                              "          ^\n")

    def test_syntax_error_on_a_later_line_of_a_file(self):
        with open(self.path("bad.txt"), "w") as f:
            f.write("q = x + y\nf = q ** (z\n")
        err = self.fails("step", "-f", "bad.txt", *CS231N_INPUTS,
                         message="error: line 2, column 10: this '(' is never closed")
        self.assertTrue(err.endswith("\n  f = q ** (z\n           ^\n"), err)

    def test_program_errors(self):
        cases = [
            ("f = sin(x)", "unknown function 'sin'; the functions are exp(x), log(x)"),
            ("f = exp(x, x)", "exp takes 1 argument, as in exp(x); got 2"),
            ("f = max(x)", "max takes 2 arguments, as in max(a, b); got 1"),
            ("f = leaky_relu(x, 1, 2)", "leaky_relu takes 1 or 2 arguments"),
            ("f = leaky_relu(x, x)", "leaky_relu's alpha must be a number"),
            ("q = x * 2; f = x", "q is assigned but never used"),
            ("f = x y", "expected an operator"),
            ("f = x + 1)", "unmatched ')'"),
            ("f = x $ 1", "unexpected character '$'"),
            ("", "the program is empty"),
        ]
        for program, message in cases:
            with self.subTest(program=program):
                self.fails("grad", program, "x=1", message="error: line 1, column ")
                self.fails("grad", program, "x=1", message=message)

    def test_input_errors(self):
        cases = [
            (["x=-2", "y=5"], "error: no value for the input z: pass z=VALUE"),
            ([*CS231N_INPUTS, "w=1"], "error: w=1: the program has no input named w"),
            ([*CS231N_INPUTS, "q=1"], "error: q=1: q is computed by the program, not an input"),
            (["x=-2", "y=five", "z=-4"], "error: y=five: 'five' is not a number"),
            ([*CS231N_INPUTS, "x=1"], "error: x is given twice: x=-2 and x=1"),
            (["x", "y=5", "z=-4"], "error: 'x' is not NAME=VALUE"),
        ]
        for inputs, message in cases:
            with self.subTest(inputs=inputs):
                self.assertEqual(self.fails("grad", CS231N, *inputs, message=message).count(
                    "\n"), 1)  # one line

    def test_no_file_is_written_after_an_error(self):
        self.fails("dot", CS231N, *CS231N_INPUTS, "-o", "g.pdf",
                   message="error: cannot write g.pdf: unknown extension '.pdf'; the graph "
                           "formats are .dot, .svg and .png")
        self.fails("dot", CS231N, *CS231N_INPUTS, "-o", "graph",
                   message="cannot write graph: it has no extension")
        with open(os.path.join(self.dir, "taken"), "w") as f:
            f.write("a file")
        self.fails("dot", CS231N, *CS231N_INPUTS, "-o", "taken/g.svg",
                   message="cannot write taken/g.svg: taken is a file, not a directory")
        os.remove(os.path.join(self.dir, "taken"))
        self.fails("dot", "f = x *", "x=1", "-o", "g.svg", message="expected an expression")
        self.fails("dot", CS231N, "x=1", "-o", "g.svg", message="no value for the inputs y, z")
        self.fails("step", CS231N, *CS231N_INPUTS, "-o", "g.jpg", "--frames", "frames",
                   message="unknown extension '.jpg'")  # nor the frames directory
        self.fails("step", "f = (x", "x=1", "--frames", "frames", message="never closed")

    def test_file_errors(self):
        self.fails("grad", "-f", "nowhere.txt", "x=1",
                   message="error: cannot read nowhere.txt: No such file or directory")
        self.fails("grad", message="error: no program")

    def test_usage_errors_exit_2(self):
        for args in [[], ["grad", "--bogus", CS231N], ["frobnicate"],
                     ["dot", CS231N, *CS231N_INPUTS, "--style", "fancy"],
                     ["step", CS231N, "-o"]]:
            with self.subTest(args=args):
                r = run(*args, cwd=self.dir)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertEqual(r.stdout, "")
                self.assertNotEqual(r.stderr, "")


class CheckFinite(CliTest):
    """--check-finite: the first NaN or infinity is one message naming its op (exit code 2),
    and nothing is printed or written; without it the same programs give nan and inf."""

    def test_forward(self):
        self.fails("grad", "--check-finite", "y = log(x)", "x=0",
                   message="error: anomaly: forward of log (node 1 'y', input 0 = 0) "
                           "produced -inf\n")
        self.fails("grad", "--check-finite", "--json", "q = x - y; r = q / q", "x=2", "y=2",
                   message="anomaly: forward of div (node 3 'r', input 0 = 0, input 1 = 0) "
                           "produced nan")
        self.fails("grad", "--check-finite", "y = exp(x)", "x=710",
                   message="anomaly: forward of exp (node 1 'y', input 0 = 710) produced inf")

    def test_backward(self):
        self.fails("grad", "--check-finite", "h = sqrt(x); y = h * 3", "x=0",
                   message="error: anomaly: backward of sqrt (node 1 'h', input 0 = 0) produced "
                           "gradient inf for x (node 0): upstream 3 times local gradient inf\n")

    def test_an_input_given_nan(self):
        self.fails("grad", "--check-finite", "y = relu(x)", "x=nan",
                   message="anomaly: input x (node 0) is nan as given, before any op")

    def test_step_and_dot_write_nothing(self):
        self.fails("step", "--check-finite", "h = sqrt(x)", "x=0", "-o", "g.svg",
                   "--frames", "frames", message="backward of sqrt")
        self.fails("dot", "--check-finite", "h = sqrt(x)", "x=0", "-o", "g.dot",
                   message="backward of sqrt")

    def test_off_the_same_programs_give_nan_and_inf(self):
        self.assertEqual(self.ok("grad", "y = log(x)", "x=0"), "y = -inf\ndy/dx = inf\n")
        self.assertEqual(self.ok("grad", "h = sqrt(x); y = h * 3", "x=0"),
                         "y = 0\ndy/dx = inf\n")
        # NaN is never swallowed (ops.hpp, Note [Kink policy]); relu'(NaN) = 1 as in PyTorch
        self.assertEqual(self.ok("grad", "y = relu(x)", "x=nan"), "y = nan\ndy/dx = 1\n")

    def test_finite_programs_are_unchanged(self):
        self.assertEqual(self.ok("grad", "--check-finite", CS231N, *CS231N_INPUTS),
                         "f = -12\ndf/dx = -4\ndf/dy = -4\ndf/dz = 3\n")


def run_to_full(*args):
    """Runs tapegrad with standard output on /dev/full, where every write fails."""
    with open("/dev/full", "w") as full:
        return subprocess.run([*wrapper.WRAPPER, TAPEGRAD, *args], stdout=full,
                              stderr=subprocess.PIPE, text=True,
                              timeout=60 * wrapper.TIMEOUT_SCALE)


def limit_file_size(size):
    """A preexec_fn for `ulimit -f`: writes past `size` bytes fail (SIGXFSZ, or EFBIG)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


class Hostile(CliTest):
    """Issue 12: input and targets that once hung, filled the memory, replaced a device or lost
    output without an error."""

    def test_inputs_that_never_end_or_block_are_refused(self):
        self.fails("grad", "-f", "/dev/zero", "x=1",
                   message="error: cannot read /dev/zero: it is a character device, not a "
                   "regular file")
        os.mkfifo(self.path("fifo"))  # nobody writes to it: reading would wait forever
        self.fails("grad", "-f", "fifo", "x=1",
                   message="error: cannot read fifo: it is a FIFO, not a regular file")
        self.fails("grad", "-f", ".", "x=1", message="error: cannot read .: Is a directory")

    def test_a_program_over_the_limit_is_refused_at_the_limit(self):
        with open(self.path("sparse.txt"), "w") as f:
            f.truncate(2 << 30)  # 2 GiB without disk space: once 4.2 GB of memory and 45 s
        self.fails("grad", "-f", "sparse.txt", "x=1",
                   message="error: cannot read sparse.txt: it is larger than the 16777216-byte "
                   "(16 MiB) limit")
        self.fails("grad", "-f", "-", "x=1", stdin="x" * ((16 << 20) + 1),
                   message="error: cannot read standard input: it is larger than the "
                   "16777216-byte (16 MiB) limit")

    def test_only_regular_writable_files_are_replaced(self):
        os.mkfifo(self.path("fifo.dot"))
        self.fails("dot", CS231N, *CS231N_INPUTS, "-o", "fifo.dot",
                   message='error: cannot write graph "fifo.dot": it is a FIFO, and only a '
                   "regular file is replaced")
        try:  # a device node, as root (the CI) can make one; --save /dev/null once replaced it
            os.mknod(self.path("null.svg"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
            self.fails("step", CS231N, *CS231N_INPUTS, "-o", "null.svg",
                       message='error: cannot write graph "null.svg": it is a character '
                       "device, and only a regular file is replaced")
            self.assertTrue(stat.S_ISCHR(os.stat(self.path("null.svg")).st_mode))
        except PermissionError:
            pass
        with open(self.path("kept.svg"), "w") as f:
            f.write("read-only")
        os.chmod(self.path("kept.svg"), 0o444)  # root would replace it but for the mode check
        self.fails("dot", CS231N, *CS231N_INPUTS, "-o", "kept.svg",
                   message='error: cannot write graph "kept.svg": it is write-protected')
        with open(self.path("kept.svg")) as f:
            self.assertEqual(f.read(), "read-only")

    def test_an_output_is_never_an_input(self):
        with open(self.path("program.dot"), "w") as f:
            f.write(CS231N)
        for command in ["dot", "step"]:
            self.fails(command, "-f", "program.dot", *CS231N_INPUTS, "-o", "program.dot",
                       message="error: -o program.dot: it is an input of this run "
                       "(program.dot); give another file")
        with open(self.path("program.dot")) as f:
            self.assertEqual(f.read(), CS231N)

    def test_lost_standard_output_is_an_error(self):
        for args in [["grad", CS231N], ["grad", "--json", CS231N], ["dot", CS231N],
                     ["step", CS231N]]:
            with self.subTest(args=args):
                r = run_to_full(*args, *CS231N_INPUTS)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertEqual(r.stderr, "error: cannot write to standard output: No space "
                                 "left on device\n")

    def test_frames_go_only_into_a_new_or_empty_directory(self):
        os.mkdir(self.path("used"))
        with open(self.path("used", "step-009.svg"), "w") as f:
            f.write("an older run's frame")
        self.fails("step", CS231N, *CS231N_INPUTS, "--frames", "used",
                   message="error: --frames used: the directory is not empty; frames go into a "
                   "new or empty directory")
        self.assertEqual(os.listdir(self.path("used")), ["step-009.svg"])
        os.mkdir(self.path("empty"))
        self.assertIn("2 frames written to empty\n",
                      self.ok("step", "f = x * y", "x=1", "y=2", "--frames", "empty"))
        self.assertEqual(sorted(os.listdir(self.path("empty"))), ["step-000.svg", "step-001.svg"])

    def test_a_frame_that_fails_leaves_no_frame_and_no_directory(self):
        # Under `ulimit -f` the third frame cannot be written: SIGXFSZ once killed the process
        # silently; now the write fails with EFBIG and the frames written so far are removed.
        program = "; ".join(f"v{i} = x * {i}" for i in range(40)) + "; f = " + " + ".join(
            f"v{i}" for i in range(40))
        with open(self.path("program.txt"), "w") as f:
            f.write(program)
        before = sorted(os.listdir(self.dir))
        r = subprocess.run([*wrapper.WRAPPER, TAPEGRAD, "step", "-f", "program.txt", "x=1",
                            "--frames", "new/frames"], cwd=self.dir, capture_output=True,
                           text=True, preexec_fn=limit_file_size(20000), timeout=60)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertRegex(r.stderr, r"^error: cannot write graph \"new/frames\.tmp-\d+/"
                         r"step-\d+\.svg\": File too large\n$")
        self.assertEqual(sorted(os.listdir(self.dir)), before)


class Messages(CliTest):
    """Messages say what happened, and never put raw control characters on the terminal."""

    def test_an_unknown_command_is_named_and_the_commands_listed(self):
        r = run("frob", cwd=self.dir)
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stderr, "error: unknown command 'frob'; the commands are grad, step, "
                                   "dot, html, train, graph, playground (tapegrad --help)\n")
        self.assertIn("\\x1b[2J", self.fails("\x1b[2J", message="unknown command"))

    def test_playground_needs_an_html_output(self):
        # The page itself is tested in a browser (tests/browser/playground_test.mjs).
        self.fails("playground", message="error: no page to write: give -o PAGE.html\n")
        self.fails("playground", "-o", "page.txt",
                   message="unknown extension '.txt'; a page is written as .html")
        with open(os.path.join(self.dir, "taken"), "w") as f:
            f.write("a file, not a directory")
        self.fails("playground", "-o", "taken/page.html",
                   message="taken is a file, not a directory")

    def test_a_nul_byte_no_longer_cuts_the_message_short(self):
        with open(os.path.join(self.dir, "nul.txt"), "wb") as f:
            f.write(b"f = x \0 2\n")
        err = self.fails("grad", "-f", "nul.txt", "x=1",
                         message="error: line 1, column 7: unexpected character '\\x00'\n")
        self.assertEqual(err.splitlines()[1:], ["  f = x \\x00 2", "        ^"])

    def test_control_characters_are_escaped(self):
        err = self.fails("grad", "f = x \x1b[2J", "x=1",
                         message="unexpected character '\\x1b'")
        self.assertNotIn("\x1b", err)
        self.assertNotIn("\x07", self.fails("grad", CS231N, "x=\x07", "y=1", "z=1",
                                            message="x=\\x07: '\\x07' is not a number"))

    def test_underflow_is_named_not_called_out_of_range(self):
        self.fails("grad", "f = x * 1e-400", "x=1",
                   message="the number '1e-400' underflows: it is nearer 0 than the smallest "
                           "double (about 4.9e-324); write 0 if 0 is meant")
        self.fails("grad", CS231N, "x=1e-999", "y=1", "z=1",
                   message="error: x=1e-999: '1e-999' underflows")
        self.fails("grad", CS231N, "x=1e999", "y=1", "z=1",
                   message="error: x=1e999: '1e999' is out of range")


class LargeGraphs(CliTest):
    """Issue 12, items 2 and 5: graphs whose layout took minutes, gigabytes or crashed Graphviz
    (Note [Long edges] and Note [The drawing budget], autograd/)."""

    BUDGET = "past the drawing budget of 1000 nodes and 1000 edges"

    def sum_of_x(self, terms):
        name = f"sum{terms}.txt"
        with open(self.path(name), "w") as f:
            f.write("f = " + "+".join(["x"] * terms))
        return name

    def test_a_value_used_by_every_op_is_drawn_from_copies(self):
        # 70 terms once took over 60 s to lay out, 100 terms over 900 s. Each use of x more than
        # 2 ranks from it is drawn from a copy of x: 67 of them for 70 terms (none for n1, n2).
        self.ok("dot", "-f", self.sum_of_x(70), "x=1", "-o", "g.svg")
        with open(self.path("g.svg")) as f:
            svg = f.read()
        copies = re.findall(r"<title>n0_copy(\d+)</title>", svg)
        self.assertEqual(sorted(map(int, copies)), list(range(1, 68)))
        # 501 terms (1,000 edges) is the largest such sum within the budget.
        out = self.ok("step", "-f", self.sum_of_x(501), "x=1", "-o", "g501.svg")
        self.assertTrue(out.endswith("graph written to g501.svg\n"))
        text = self.ok("dot", "-f", self.sum_of_x(501), "x=1")
        self.assertEqual(text.count("n0_copy"), 2 * 498)  # each copy: its node, its edge

    def test_past_the_budget_nothing_is_drawn_printed_or_written(self):
        # 3,000 terms crashed Graphviz under a 4 GB limit; 1,000 took 3.2 GB.
        program = self.sum_of_x(3000)
        message = "error: graph: 3000 nodes and 5998 edges are " + self.BUDGET
        self.fails("dot", "-f", program, "x=1", message=message)
        for output in ("g.svg", "g.dot", "g.png"):
            self.fails("dot", "-f", program, "x=1", "-o", output, message=message)
        self.fails("dot", "-f", program, "x=1", "--style", "values", message=message)
        self.fails("step", "-f", program, "x=1", "-o", "g.svg", message=message)
        self.fails("step", "-f", program, "x=1", "--frames", "frames", message=message)
        # The step page has a tighter limit of its own, checked first.
        self.fails("html", "-f", program, "x=1", "-o", "page.html",
                   message="error: page: the graph has 3000 nodes; one of more than 400")
        # Without a graph to draw, the program runs as before.
        self.assertEqual(self.ok("grad", "-f", program, "x=1"), "f = 3000\ndf/dx = 3000\n")
        # One term past the largest sum within it: 1,002 edges.
        self.fails("dot", "-f", self.sum_of_x(502), "x=1",
                   message="error: graph: 502 nodes and 1002 edges are " + self.BUDGET)

    def test_the_dot_text_of_a_2mb_program_is_refused_in_proportion_to_it(self):
        # Item 5: 2 MB once took 1.67 GB and 84 s to print as DOT. It is refused after one walk
        # down the tape, before any text is built.
        lines = ["v0 = x"]
        size = 7
        while size < (2 << 20):
            i = len(lines)
            lines.append(f"v{i} = v{i - 1} * 0.99 + x / 4")
            size += len(lines[-1]) + 1
        with open(self.path("big.txt"), "w") as f:
            f.write("\n".join(lines))
        err = self.fails("dot", "-f", "big.txt", "x=0.5", message=self.BUDGET)
        self.assertRegex(err, r"error: graph: \d+ nodes and \d+ edges are past")
        self.assertGreater(int(re.search(r"graph: (\d+) nodes", err).group(1)), 100000)


class Help(CliTest):
    def test_each_subcommand_explains_the_language(self):
        for command in ["grad", "step", "dot"]:
            with self.subTest(command=command):
                out = self.ok(command, "--help")
                self.assertIn(f"tapegrad {command} [OPTIONS]", out)  # the usage line
                self.assertIn("'name = expr' binds a name", out)
                self.assertIn("tapegrad grad 'q = x + y; f = q * z' x=-2 y=5 z=-4", out)
                self.assertIn("leaky_relu(x[, alpha])", out)
        self.assertIn("--frames", self.ok("step", "--help"))
        self.assertIn("--style", self.ok("dot", "--help"))
        self.assertIn("--json", self.ok("grad", "--help"))
        for command in ["grad", "step", "dot"]:
            self.assertIn("--check-finite", self.ok(command, "--help"))

    def test_the_function_list_is_the_op_tables_and_the_readme_has_it(self):
        # --help lists one function a line, signature then what it computes, read from the op
        # table; the README's list of functions must name the same ones.
        out = self.ok("grad", "--help")
        signatures = re.findall(r"^    ([a-z_]+\([^)]*\))  ", out, re.MULTILINE)
        names = [s.split("(")[0] for s in signatures]
        for new in ["gelu", "gelu_tanh", "silu", "min", "clamp_min", "clamp_max", "leaky_relu"]:
            self.assertIn(new, names)
        self.assertIn("clamp_min(x, lo)", signatures)
        readme = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")
        with open(readme, encoding="utf-8") as f:
            text = " ".join(f.read().split())
        listed = re.search(r"and the functions `([^`]*)`", text).group(1)
        self.assertEqual(listed.split(" ")[0], "exp")
        for signature in signatures:
            with self.subTest(signature=signature):
                if "," in signature:  # written out: max(a, b), leaky_relu(x[, alpha])
                    self.assertIn(signature, listed)
                else:  # by name: exp, gelu
                    self.assertIn(signature.split("(")[0], listed.split(" "))
        self.assertEqual(self.ok("grad", "f = clamp_min(x, 0) + min(x, 1) + gelu(x)", "x=-1",
                                 "--json").count("grad"), 1)


class CommandLine(CliTest):
    """Issue 13, item 7: the command line as people expect it."""

    def test_version_is_the_projects(self):
        with open(os.path.join(SOURCE_ROOT, "meson.build")) as f:
            version = re.search(r"version : '([^']+)'", f.read()).group(1)
        self.assertEqual(self.ok("--version"), f"tapegrad {version}\n")

    def test_help_is_a_command(self):
        self.assertEqual(self.ok("help"), self.ok("--help"))
        for command in ["grad", "step", "dot", "html", "train", "graph", "playground"]:
            with self.subTest(command=command):
                self.assertEqual(self.ok("help", command), self.ok(command, "--help"))
                self.assertIn(f"\nUsage: tapegrad {command} [OPTIONS]", self.ok("help", command))
        self.fails("help", "trian", message="error: unknown command 'trian' (did you mean "
                   "train?); the commands are grad, step, dot, html, train, graph, playground")
        self.fails(message="error: no command: the commands are grad, step, dot, html, train, "
                   "graph, playground (tapegrad help)")

    def test_a_misspelt_option_gets_the_nearest(self):
        cases = [(["train", "--epoch", "10"], "train: unknown option '--epoch'; did you mean "
                  "--epochs?"),
                 (["train", "--data", "xor", "--epcohs", "3"], "did you mean --epochs?"),
                 (["step", CS231N, *CS231N_INPUTS, "--frmaes", "f"], "did you mean --frames?"),
                 (["grad", "-json", CS231N, *CS231N_INPUTS], "did you mean --json?"),
                 (["dot", CS231N, *CS231N_INPUTS, "--stlye", "values"], "did you mean --style?"),
                 (["html", "--mlpp", "2,2,1", "-o", "p.html"], "did you mean --mlp?"),
                 (["graph", "m.safetensors", "--layer", "2,1"], "did you mean --layers?"),
                 (["train", "--epo", "3"], "did you mean --epochs?"),
                 (["--verison"], "unknown option '--verison' (did you mean --version?)"),
                 (["trian"], "unknown command 'trian' (did you mean train?)"),
                 (["train", "--frobnicate"], "train: unknown option '--frobnicate'; tapegrad "
                  "help train lists the options")]
        for args, message in cases:
            with self.subTest(args=args):
                self.assertEqual(self.fails(*args, message=message).count("\n"), 1)

    def test_a_program_may_start_with_minus(self):
        self.assertEqual(self.ok("grad", "-x^2", "x=3"), "out = -9\ndout/dx = -6\n")
        self.assertEqual(json.loads(self.ok("grad", "-2*x", "x=3", "--json")),
                         {"value": -6, "grad": {"x": -2}})
        self.assertIn("  out = -t1 = -9\n", self.ok("step", "--check-finite", "-x^2", "x=3"))
        self.assertEqual(self.ok("grad", "--json", "--", "-x", "x=3"),
                         '{"value": -3, "grad": {"x": -1}}\n')
        # -x alone could be a misspelt option: the message names the remedy.
        self.fails("grad", "-x", "x=3", message="error: grad: unknown option '-x'; a program "
                   "that starts with '-' goes after '--': tapegrad grad -- '-x' NAME=VALUE...")
        # Negative values of options stay values.
        self.assertIn("page written to p.html",
                      self.ok("html", "--mlp", "2,2,1", "--x", "-1,0", "--y", "-0", "-o",
                              "p.html"))

    def test_each_help_has_its_own_examples(self):
        language = "'name = expr' binds a name"
        top = self.ok("--help")
        self.assertNotIn(language, top)
        self.assertIn("tapegrad help COMMAND", top)
        for command in ["train", "graph"]:
            with self.subTest(command=command):
                out = self.ok(command, "--help")
                self.assertNotIn(language, out)
                self.assertIn("Example", out)
                self.assertIn(f"\n  tapegrad {command} ", out)
        self.assertIn("on every row of each set", self.ok("train", "--help"))

    @wrapper.slow
    def test_the_help_examples_run_as_printed(self):
        # Every "  tapegrad ..." line of these helps, in order, in one directory (graph's
        # example reads what train's saved); what follows 3 spaces describes it.
        examples = []
        for command in [[], ["train"], ["graph"]]:
            for line in self.ok(*command, "--help").splitlines():
                args = shlex.split(line.split("   ")[0]) if line.startswith("  tapegrad ") else []
                if args and args not in examples:
                    examples.append(args)
        self.assertEqual(len(examples), 9, examples)
        for args in examples:
            with self.subTest(args=args):
                self.ok(*args[1:])


def main():
    global TAPEGRAD
    if len(sys.argv) != 2:
        print("usage: cli_test.py PATH/TO/tapegrad", file=sys.stderr)
        return 2
    TAPEGRAD = os.path.abspath(sys.argv[1])
    return runner.run(__name__)


if __name__ == "__main__":
    sys.exit(main())
