#!/usr/bin/env python3
"""Tests of infra/check-glibc.sh, the check that Lambda binaries need no
glibc newer than provided.al2023's 2.34: it passes what it should, and it
fails (naming the reason) on binaries needing too new a glibc, on zips
without an executable bootstrap, and on files that are not x86-64 ELF.

The check itself runs on the real function zips in tests/run.sh (after
`infra/package.sh --debug`); these tests use binaries of the machine.

    python3 -m unittest infra/test_packaging.py   # from the repo root
"""

import os
import shutil
import subprocess
import tempfile
import unittest
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
CHECK = os.path.join(HERE, "check-glibc.sh")
TRUE = shutil.which("true") or "/bin/true"


def check(*files, max_glibc=None):
    env = dict(os.environ)
    env.pop("STRATUS_MAX_GLIBC", None)
    if max_glibc:
        env["STRATUS_MAX_GLIBC"] = max_glibc
    return subprocess.run([CHECK, *files], env=env, capture_output=True,
                          text=True, timeout=60)


class CheckGlibcTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.dir.cleanup()

    def zip_of(self, name, data, mode=0o755):
        path = os.path.join(self.dir.name, f"{len(os.listdir(self.dir.name))}.zip")
        with zipfile.ZipFile(path, "w") as z:
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100000 | mode) << 16
            z.writestr(info, data)
        return path

    def test_passes_a_binary_within_the_limit(self):
        r = check(TRUE, max_glibc="99.0")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"newest GLIBC symbol version needed: GLIBC_2\.\d+")

    def test_fails_a_binary_needing_a_newer_glibc(self):
        r = check(TRUE, max_glibc="2.2.5")
        self.assertEqual(r.returncode, 1)
        self.assertIn("newer than GLIBC_2.2.5", r.stdout)
        self.assertIn("provided.al2023 ships 2.34", r.stderr)

    def test_reads_the_bootstrap_inside_a_zip(self):
        with open(TRUE, "rb") as f:
            z = self.zip_of("bootstrap", f.read())
        self.assertEqual(check(z, max_glibc="99.0").returncode, 0)
        self.assertEqual(check(z, max_glibc="2.2.5").returncode, 1)

    def test_fails_a_zip_without_an_executable_bootstrap(self):
        with open(TRUE, "rb") as f:
            data = f.read()
        for z in (self.zip_of("main", data), self.zip_of("bootstrap", data, mode=0o644)):
            r = check(z, max_glibc="99.0")
            self.assertNotEqual(r.returncode, 0, z)
            self.assertIn("bootstrap", r.stderr)

    def test_fails_what_is_not_an_x86_64_elf(self):
        script = os.path.join(self.dir.name, "script.sh")
        with open(script, "w", encoding="utf-8") as f:
            f.write("#!/bin/sh\n")
        r = check(script, max_glibc="99.0")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("not an ELF file", r.stderr)

    def test_needs_at_least_one_file(self):
        self.assertNotEqual(check().returncode, 0)


if __name__ == "__main__":
    unittest.main()
