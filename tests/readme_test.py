#!/usr/bin/env python3
# README.md as a newcomer reads it: its first screen (what tapegrad is, two pictures, the try-it
# commands, then the two set-up commands for Debian or Ubuntu); every C++ program on it built
# against a scratch install with pkg-config, as tests/install_test.sh builds one, and run (its
# shown output compared); every `$ build/tools/tapegrad ...` command run and its output compared;
# every try-it command run. Usage: readme_test.py BUILD_DIR README PATH/TO/tapegrad
import glob
import os
import re
import shlex
import subprocess
import sys
import tempfile
import unittest

import runner  # tests/runner.py: the closing "N passed, M failed" line

BUILD = README = TAPEGRAD = None  # set from argv in main()
# A fenced block, indented as inside a list item or not: (indent, language, text).
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```$", re.M | re.S)


def blocks(text):
    """(language, dedented text, end offset) of every fenced block, in order."""
    found = []
    for m in FENCE.finditer(text):
        indent = len(m.group(1))
        lines = [line[indent:] for line in m.group(3).splitlines()]
        found.append((m.group(2), "\n".join(lines) + "\n", m.start(), m.end()))
    return found


def same_lines(text):
    """Text compared line by line without trailing blanks (an editor may trim them)."""
    return [line.rstrip() for line in text.rstrip("\n").splitlines()]


class Readme(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(README, encoding="utf-8") as f:
            cls.text = f.read()
        cls.blocks = blocks(cls.text)
        cls._tmp = tempfile.TemporaryDirectory()
        cls.tmp = cls._tmp.name

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def scratch(self, name):
        path = os.path.join(self.tmp, name)
        os.makedirs(path, exist_ok=True)
        return path

    def run_shell(self, command, cwd):
        """A command of the README, with build/tools/tapegrad the tapegrad under test."""
        command = command.replace("build/tools/tapegrad", shlex.quote(TAPEGRAD))
        return subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True,
                              timeout=300)

    def test_the_first_screen(self):
        # Title, one sentence on what tapegrad is and for whom, the two pictures, then the
        # README's first commands: the set-up block of exactly the two commands, for Debian or
        # Ubuntu; then the try-it commands.
        head = self.text[:self.text.index("## Set-up")]
        self.assertTrue(head.startswith("# tapegrad\n\ntapegrad is a "), head[:80])
        self.assertIn("for people who teach or\nlearn backpropagation", head)
        for image in re.findall(r"!\[[^]]+\]\(([^)]+)\)", head):
            with self.subTest(image=image):
                path = os.path.join(os.path.dirname(README), image)
                with open(path, "rb") as f:
                    self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
                self.assertLess(os.path.getsize(path), 300_000)
        self.assertEqual(len(re.findall(r"!\[", head)), 2)
        self.assertFalse([b for b in self.blocks if b[2] < len(head)], "a command before set-up")
        setup = self.blocks[0]
        self.assertEqual(setup[1], "bash tools/setup.sh demo\nbash tools/setup.sh test\n")
        self.assertEqual(self.text[len(head):setup[2]], "## Set-up (Debian or Ubuntu)\n\n")
        self.assertIn("Both need Debian or Ubuntu", self.text[setup[3]:setup[3] + 200])
        try_it = self.try_it_block()
        self.assertEqual([line.split(" ")[1] for line in try_it[1].splitlines()],
                         ["step", "html", "train"])
        # Lecture notes a reader cannot open are not cited.
        self.assertNotIn("note 00", self.text)
        self.assertNotIn("lecture notes", self.text)

    def test_every_cpp_program_builds_and_runs(self):
        root = self.scratch("root")
        subprocess.run(["meson", "install", "-C", BUILD, "--destdir", root, "--no-rebuild",
                        "--quiet"], check=True, capture_output=True)
        pc = glob.glob(os.path.join(root, "**", "tapegrad.pc"), recursive=True)
        self.assertEqual(len(pc), 1, "meson install wrote no tapegrad.pc")
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pc[0]))

        def pkg_config(*args):
            prefix = subprocess.run(["pkg-config", "--variable=prefix", "tapegrad"], env=env,
                                    check=True, capture_output=True, text=True).stdout.strip()
            return subprocess.run(["pkg-config", f"--define-variable=prefix={root}{prefix}",
                                   *args, "tapegrad"], env=env, check=True,
                                  capture_output=True, text=True).stdout.split()

        flags, libdir = pkg_config("--cflags", "--libs"), pkg_config("--variable=libdir")[0]
        programs = [(i, b) for i, b in enumerate(self.blocks) if b[0] == "cpp"]
        self.assertGreaterEqual(len(programs), 2)
        for i, (language, source, start, end) in programs:
            with self.subTest(program=source.splitlines()[0]):
                work = self.scratch(f"program{i}")
                with open(os.path.join(work, "prog.cpp"), "w") as f:
                    f.write(source)
                built = subprocess.run(["g++", "-std=c++20", "prog.cpp", *flags, "-o", "prog"],
                                       cwd=work, capture_output=True, text=True)
                self.assertEqual(built.returncode, 0, built.stderr)
                ran = subprocess.run(["./prog"], cwd=work, capture_output=True, text=True,
                                     env=dict(os.environ, LD_LIBRARY_PATH=libdir), timeout=300)
                self.assertEqual(ran.returncode, 0, ran.stderr)
                # An `output` block right after it is what it prints.
                following = self.blocks[i + 1] if i + 1 < len(self.blocks) else None
                if following and following[0] == "output" and \
                        self.text[end:following[2]].strip() == "prints":
                    self.assertEqual(same_lines(ran.stdout), same_lines(following[1]))

    def test_every_shown_command_prints_what_is_shown(self):
        shown = 0
        for language, text, start, end in self.blocks:
            if not text.startswith("$ "):
                continue
            # "$ command" then its output, up to the next "$ " line.
            for part in re.split(r"^\$ ", text, flags=re.M)[1:]:
                command, _, expected = part.partition("\n")
                shown += 1
                with self.subTest(command=command):
                    r = self.run_shell(command, self.scratch(f"shown{shown}"))
                    self.assertEqual(same_lines(r.stdout + r.stderr), same_lines(expected))
        self.assertGreaterEqual(shown, 3)

    def try_it_block(self):
        """The first block under "## Try it", which follows the set-up."""
        section = self.text.index("\n## Try it\n")
        return next(b for b in self.blocks if b[2] > section)

    def test_the_try_it_commands_run(self):
        try_it = self.try_it_block()
        work = self.scratch("try_it")
        for command in try_it[1].splitlines():
            with self.subTest(command=command):
                r = self.run_shell(command, work)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stderr, "")
        self.assertTrue(os.path.exists(os.path.join(work, "cs231n.html")))


def main():
    global BUILD, README, TAPEGRAD
    if len(sys.argv) != 4:
        print("usage: readme_test.py BUILD_DIR README PATH/TO/tapegrad", file=sys.stderr)
        return 2
    BUILD, README, TAPEGRAD = (os.path.abspath(a) for a in sys.argv[1:])
    return runner.run(__name__)


if __name__ == "__main__":
    sys.exit(main())
