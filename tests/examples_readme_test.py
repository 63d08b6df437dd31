#!/usr/bin/env python3
# examples/README.md cannot drift from the programs: each section's program is run as the README
# runs it (the default run, no plots), and every number the section quotes must be one the
# program prints, or a figure of its recipe listed below. Usage: examples_readme_test.py README
# EXAMPLE_PROGRAM...
import os
import re
import subprocess
import sys
import tempfile
import unittest

import runner  # tests/runner.py: the closing "N passed, M failed" line

README = None  # set from argv in main()
EXAMPLES = {}  # program name -> path

# A number as written in prose or printed: 0.50, 4.86e-02, 89%, 2-16-16-1 (four numbers), 60,000
# (one number, the same as a program's 60000: numbers() drops the separators). Signs are left out
# (a README writes "-0.0184" as "- 0.0184" in an equation); digits glued to a letter (W11, x1,
# 2x5's 5) are names, not numbers.
NUMBER = re.compile(r"(?<![\w.])(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:e[-+]?\d+)?(?![\w])")

# Numbers a section gives that its program takes as its recipe or that explain it, and does not
# print. Every other number in a section is a figure of the program's output.
RECIPE = {
    "deep_xor": set(),
    "vanishing_gradient": set(),
    "zero_init": set(),
    # Leaky ReLU's slope, the 600 spirals points of which 120 are held out, chance for 3 classes
    "activations": {"0.01", "600", "120", "0.333"},
    "dying_relu": set(),
    "relu_interactions": set(),
    "logistic_regression": set(),
    # make_moons' noise, the L2 factor, and the learning-rate schedule 1.0 - 0.9 k/100
    "moons": {"0.1", "1e-4", "1.0", "0.9"},
    "fashion_mnist": set(),
    "newton": set(),
    "second_derivatives": set(),
    "curvature": set(),
}

# The run a section describes, when it is not the default one: activations' section also gives
# the Fashion-MNIST comparison that --fashion adds to the default run's output.
ARGS = {"activations": ["--fashion"]}

# Text a section fences off from the check, with the reason in the opening comment (none does
# today: even the Fashion-MNIST runs take seconds).
UNCHECKED = re.compile(r"<!-- unchecked:.*?-->.*?<!-- /unchecked -->", re.S)


def sections(text):
    """(heading, body) for each '### ' section of the README."""
    parts = re.split(r"^### (.*)$", text, flags=re.M)
    return list(zip(parts[1::2], parts[2::2]))


def numbers(text):
    """The numbers in `text`, digit groups joined: "235,146" is 235146, as a program prints it."""
    return [n.replace(",", "") for n in NUMBER.findall(text)]


def quoted_numbers(body):
    """The numbers a section quotes: its prose, tables and commands, not its pictures' names or
    what it fences off."""
    body = UNCHECKED.sub("", body)
    body = re.sub(r"^!\[.*$", "", body, flags=re.M)
    return numbers(body)


def unprinted(body, output, recipe):
    """The numbers `body` quotes that `output` does not print and `recipe` does not list."""
    printed = set(numbers(output))
    return [n for n in quoted_numbers(body) if n not in printed and n not in recipe]


class ExamplesReadme(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(README, encoding="utf-8") as f:
            cls.sections = sections(f.read())
        cls._tmp = tempfile.TemporaryDirectory()
        cls.outputs = {}

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def output(self, program):
        """The program's run as the README shows it (the default one unless ARGS names another),
        without the pictures, at one BLAS thread as fashion_mnist's section runs it."""
        if program not in self.outputs:
            env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
            r = subprocess.run([EXAMPLES[program], "--out", self._tmp.name, "--no-plots",
                                *ARGS.get(program, [])], capture_output=True, text=True,
                               timeout=600, env=env)
            self.assertEqual(r.returncode, 0, f"{program}: {r.stderr}")
            self.outputs[program] = r.stdout
        return self.outputs[program]

    def test_every_section_names_its_program(self):
        programs = [re.search(r"build/examples/(\w+)", body) for _, body in self.sections]
        self.assertTrue(all(programs), [h for (h, _), p in zip(self.sections, programs) if not p])
        names = {p.group(1) for p in programs}
        self.assertEqual(names, set(RECIPE))
        self.assertLessEqual(names, set(EXAMPLES))

    def test_every_quoted_number_is_printed(self):
        for heading, body in self.sections:
            program = re.search(r"build/examples/(\w+)", body).group(1)
            numbers = quoted_numbers(body)
            if program not in RECIPE:  # fenced off whole, and said so
                self.assertEqual(numbers, [], heading)
                continue
            with self.subTest(program=program):
                missing = unprinted(body, self.output(program), RECIPE[program])
                self.assertEqual(missing, [], f"examples/README.md, '{heading}', quotes numbers "
                                 f"that {program} does not print:\n{self.output(program)}")

    def test_a_drifted_figure_is_caught(self):
        # The check itself: moons' parameter count changed by one, or a figure rounded
        # differently from the program's, is reported; the page as written is not.
        body = next(b for h, b in self.sections if h.startswith("moons"))
        output = self.output("moons")
        self.assertEqual(unprinted(body, output, RECIPE["moons"]), [])
        self.assertEqual(unprinted(body.replace("337 parameters", "338 parameters"), output,
                                   RECIPE["moons"]), ["338"])
        self.assertEqual(unprinted(body.replace("1.6728", "1.67"), output, RECIPE["moons"]),
                         ["1.67"])
        fenced = "<!-- unchecked: a test -->\n1.67\n<!-- /unchecked -->"
        self.assertEqual(unprinted(body + fenced, output, RECIPE["moons"]), [])
        # A grouped number is read whole: fashion_mnist prints 235146, the page says 235,146.
        body = next(b for h, b in self.sections if h.startswith("fashion_mnist"))
        output = self.output("fashion_mnist")
        self.assertEqual(unprinted(body, output, RECIPE["fashion_mnist"]), [])
        self.assertEqual(unprinted(body.replace("235,146", "235,147"), output,
                                   RECIPE["fashion_mnist"]), ["235147"])


def main():
    global README
    if len(sys.argv) < 3:
        print("usage: examples_readme_test.py README EXAMPLE_PROGRAM...", file=sys.stderr)
        return 2
    README = sys.argv[1]
    EXAMPLES.update({os.path.basename(p): os.path.abspath(p) for p in sys.argv[2:]})
    return runner.run(__name__)


if __name__ == "__main__":
    sys.exit(main())
