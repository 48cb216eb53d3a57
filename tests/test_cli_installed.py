"""The installed ``kmc`` console script, run from a temporary directory (not the checkout)."""
import re
import shutil
import subprocess

import pytest

KMC = shutil.which("kmc")
pytestmark = pytest.mark.skipif(KMC is None, reason="the kmc console script is not installed")

BENCH_LINE = re.compile(
    r"^(hop|hop-random) L=(\d+) sites=(\d+) events=(\d+) seconds=([\d.]+) events_per_s=(\d+) "
    r"state_bytes_per_site=([\d.]+) peak_rss_mb=([\d.]+)$"
)


def _kmc(*args, cwd):
    return subprocess.run([KMC, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_reads_like_a_manual(tmp_path):
    out = _kmc("--help", cwd=tmp_path)
    assert out.returncode == 0
    assert "anode-free sodium" in out.stdout and "bench" in out.stdout and "Exit codes" in out.stdout
    sub = _kmc("bench", "--help", cwd=tmp_path)
    assert sub.returncode == 0 and "events_per_s" in sub.stdout


def test_bench_prints_one_machine_readable_line_per_run(tmp_path):
    out = _kmc("bench", "--sizes", "6,8", "--seconds", "0.05", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 4
    for line, (model, size) in zip(lines, [("hop", 6), ("hop", 8), ("hop-random", 6), ("hop-random", 8)]):
        m = BENCH_LINE.match(line)
        assert m, line
        assert m[1] == model and int(m[2]) == size and int(m[3]) == size**3
        assert int(m[4]) > 0 and float(m[7]) <= 40.0
    assert list(tmp_path.iterdir()) == []  # the benchmark writes nothing


def test_bad_option_exits_2(tmp_path):
    out = _kmc("bench", "--sizes", "1,x", cwd=tmp_path)
    assert out.returncode == 2
    assert "--sizes" in out.stderr
