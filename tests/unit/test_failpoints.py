import subprocess
import sys

from ferry.failpoints import KILLED, enabled

SCRIPT = "from ferry.failpoints import failpoint; failpoint('a.b'); print('survived')"


def run(env_value: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env={"FERRY_FAILPOINTS": env_value, "PATH": ""})


def test_named_failpoint_kills_the_process_with_137():
    killed = run("x, a.b")
    assert killed.returncode == KILLED and "survived" not in killed.stdout
    assert "failpoint a.b" in killed.stderr


def test_other_or_no_failpoints_are_no_ops(monkeypatch):
    assert run("a.bc,b").returncode == 0
    monkeypatch.delenv("FERRY_FAILPOINTS", raising=False)
    assert not enabled("a.b")
