#!/usr/bin/env python3
"""Tests of the gateway image that need no container engine.

Images cannot be built on the project's machines, so this reads
infra/Dockerfile and checks it against the task definition in
infra/template.yaml (ports, settings, user), and runs the image's
entrypoint (infra/gateway-entrypoint.sh) with a stand-in `stratus` to show
it writes the certificate files, keeps the key private and out of the
environment, and refuses a half-configured certificate.

    .emu/venv/bin/python -m unittest infra/test_image.py   # from the repo root
"""

import os
import re
import shlex
import stat
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import test_template  # noqa: E402 - infra/test_template.py, beside this file
DOCKERFILE = os.path.join(HERE, "Dockerfile")
ENTRYPOINT = os.path.join(HERE, "gateway-entrypoint.sh")

CERT = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIEfake\n-----END PRIVATE KEY-----"


def dockerfile():
    """Instructions as (KEYWORD, argument text), continuation lines joined."""
    with open(DOCKERFILE, encoding="utf-8") as f:
        raw = f.read()
    joined = re.sub(r"\\\n", " ", raw)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stage(instructions, n):
    """The instructions of build stage n (0-based)."""
    stages = []
    for ins in instructions:
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages[n]


class DockerfileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ins = dockerfile()
        cls.runtime = stage(cls.ins, -1)
        cls.container = test_template.container(test_template.load())

    def test_multi_stage_release_build(self):
        froms = [a for k, a in self.ins if k == "FROM"]
        self.assertGreaterEqual(len(froms), 2, "build and runtime stages")
        self.assertRegex(froms[0], r"^rust:1\.95", "the toolchain the project pins")
        build = " ".join(a for k, a in stage(self.ins, 0) if k == "RUN")
        self.assertIn("cargo build --release --locked", build)
        self.assertIn("--bin stratus", build)
        self.assertIn("COPY --from=build", " ".join(k + " " + a for k, a in self.runtime))

    def test_same_debian_release_in_both_stages(self):
        froms = [a for k, a in self.ins if k == "FROM"]
        releases = [re.search(r"(bookworm|trixie|forky)", f) for f in froms]
        self.assertTrue(all(releases), froms)
        self.assertEqual(len({m.group(1) for m in releases}), 1,
                         "the binary must find the glibc it was linked against")

    def test_small_runtime_base(self):
        base = [a for k, a in self.runtime if k == "FROM"][0]
        self.assertRegex(base, r"(-slim|distroless)", base)

    def test_runs_as_non_root(self):
        users = [a for k, a in self.runtime if k == "USER"]
        self.assertEqual(len(users), 1)
        self.assertNotIn(users[0].split(":")[0], ("root", "0"))

    def test_exposes_every_container_port_of_the_task(self):
        exposed = set()
        for k, a in self.runtime:
            if k == "EXPOSE":
                exposed |= {int(p.split("/")[0]) for p in a.split()}
        mapped = {m["ContainerPort"] for m in self.container["PortMappings"]}
        self.assertEqual(exposed, mapped)

    def test_image_settings_agree_with_the_task_definition(self):
        env = {}
        for k, a in self.runtime:
            if k == "ENV":
                for word in shlex.split(a):
                    name, _, value = word.partition("=")
                    env[name] = value
        task = {e["Name"]: e["Value"] for e in self.container["Environment"]}
        self.assertTrue(env)
        for name, value in env.items():
            self.assertEqual(task.get(name), value, name)

    def test_entrypoint_is_the_certificate_script(self):
        copies = [a for k, a in self.runtime if k == "COPY"]
        self.assertIn("infra/gateway-entrypoint.sh /usr/local/bin/stratus-entrypoint", copies)
        self.assertIn(("ENTRYPOINT", '["/usr/local/bin/stratus-entrypoint"]'), self.runtime)
        self.assertEqual(self.container.get("Command"), ["serve"])

    def test_entrypoint_is_executable(self):
        self.assertTrue(os.stat(ENTRYPOINT).st_mode & stat.S_IXUSR)


class EntrypointTest(unittest.TestCase):
    """Runs infra/gateway-entrypoint.sh with a `stratus` that reports what it got."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        d = self.dir.name
        self.bin = os.path.join(d, "bin")
        os.mkdir(self.bin)
        fake = os.path.join(self.bin, "stratus")
        with open(fake, "w", encoding="utf-8") as f:
            f.write("#!/bin/sh\n"
                    "echo \"args:$*\"\n"
                    "env | grep -c PEM || true\n")
        os.chmod(fake, 0o755)
        self.cert = os.path.join(d, "run", "tls", "cert.pem")
        self.key = os.path.join(d, "run", "tls", "key.pem")

    def tearDown(self):
        self.dir.cleanup()

    def run_entrypoint(self, env, *args):
        base = {"PATH": self.bin + os.pathsep + "/usr/bin:/bin"}
        base.update(env)
        return subprocess.run(["/bin/sh", ENTRYPOINT, *args], env=base,
                              capture_output=True, text=True, timeout=30)

    def tls_env(self, **over):
        env = {"TLS_CERT_PEM": CERT, "TLS_KEY_PEM": KEY,
               "STRATUS_TLS_CERT": self.cert, "STRATUS_TLS_KEY": self.key}
        env.update(over)
        return env

    def test_writes_cert_and_private_key_then_runs_serve(self):
        r = self.run_entrypoint(self.tls_env())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines(), ["args:serve", "0"],
                         "serve by default, and no PEM left in the environment")
        with open(self.cert, encoding="utf-8") as f:
            self.assertEqual(f.read(), CERT + "\n")
        with open(self.key, encoding="utf-8") as f:
            self.assertEqual(f.read(), KEY + "\n")
        self.assertEqual(stat.S_IMODE(os.stat(self.key).st_mode), 0o600)
        self.assertEqual(sorted(os.listdir(os.path.dirname(self.key))),
                         ["cert.pem", "key.pem"], "no temporary file left behind")

    def test_passes_admin_commands_through(self):
        r = self.run_entrypoint(self.tls_env(), "domain", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines()[0], "args:domain list")

    def test_without_a_secret_leaves_tls_to_stratus(self):
        r = self.run_entrypoint({})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines()[0], "args:serve")
        self.assertFalse(os.path.exists(self.cert))

    def test_refuses_half_a_certificate(self):
        for env in (self.tls_env(TLS_KEY_PEM=""), self.tls_env(TLS_CERT_PEM=""),
                    self.tls_env(STRATUS_TLS_KEY=""),
                    self.tls_env(TLS_CERT_PEM="not a certificate"),
                    self.tls_env(TLS_KEY_PEM=CERT)):
            r = self.run_entrypoint(env)
            self.assertEqual(r.returncode, 64, (env, r.stdout, r.stderr))
            self.assertIn("stratus-entrypoint:", r.stderr)
            self.assertNotIn("args:", r.stdout, "stratus must not start")


if __name__ == "__main__":
    unittest.main()
