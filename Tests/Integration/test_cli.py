"""The command line: `portcullis check` (exit codes, file:line:column messages), version, help."""
import os
import subprocess

from conftest import BIN, ROOT


def check(path):
    return subprocess.run([os.path.join(BIN, "portcullis"), "check", "--config", path],
                          capture_output=True, text=True, timeout=10)


def test_example_config_is_valid():
    r = check(os.path.join(ROOT, "Config", "portcullis.example.yaml"))
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout


def test_bad_config_names_file_line_and_key(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("server:\n  listen: [\"127.0.0.1:8080\"]\n  header_timeout: soon\nproviders:\n"
                 "  local: { base_url: \"http://127.0.0.1:9000\" }\nroutes:\n  - { path: /x, provider: local }\n")
    r = check(str(p))
    assert r.returncode == 1
    assert f"{p}:3:19: server.header_timeout: expected a duration" in r.stderr


def test_missing_file(tmp_path):
    r = check(str(tmp_path / "nope.yaml"))
    assert r.returncode == 1
    assert "cannot read the file" in r.stderr


def test_bad_listen_fails_to_start(tmp_path):
    p = tmp_path / "busy.yaml"
    p.write_text("server: { listen: [\"192.0.2.1:1\"] }\nproviders: { p: { base_url: 'http://127.0.0.1:1' } }\n"
                 "routes: [ { path: /x, provider: p } ]\n")
    r = subprocess.run([os.path.join(BIN, "portcullis"), "--config", str(p)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert "bind(192.0.2.1:1)" in r.stderr


def test_version_help_and_unknown_arguments():
    exe = os.path.join(BIN, "portcullis")
    run = lambda *a: subprocess.run([exe, *a], capture_output=True, text=True, timeout=10)
    for spelling in (["version"], ["--version"], ["-v"]):
        r = run(*spelling)
        assert r.returncode == 0 and r.stdout.startswith("portcullis "), (spelling, r.stdout, r.stderr)
    r = run("--help")
    assert r.returncode == 0 and "usage: portcullis" in r.stdout
    for bad, said in ((["--bogus"], "unknown argument '--bogus'"), (["frobnicate"], "unknown command 'frobnicate'"),
                      (["check"], "check needs --config FILE"), (["--config"], "--config needs a file")):
        r = run(*bad)
        assert r.returncode == 1 and said in r.stderr and "usage: portcullis" in r.stderr, (bad, r.stderr)
