"""The memory estimate (``kmc.memory``) against the measured peak of real runs.

    python benchmarks/memory.py [--sizes 32,64,128] [--scenario scenarios/validation/T2.toml]

Each run is a fresh ``kmc run`` process of the scenario at nx = ny = size (a short protocol, 0.02
mAh/cm², with a checkpoint, a snapshot and a map at every sample so that every phase the estimate
counts happens); its peak is the process's maximum resident set (ru_maxrss). The first
line is the baseline: the same run on 8 × 8 columns, kernels already cached (a warm-up run compiles
them if they are not). Prints machine-readable lines:

    baseline peak_rss_mib=<m>
    memory columns=<n>x<n> sites=<n> estimate_mib=<m> measured_mib=<m> error_pct=<%> phase=<phase>
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import kmc
from kmc import memory
from kmc.api import plan_replicas

SHORT = ("protocol.0.capacity_mah_cm2=0.02", "output.sample_every_s=20", "output.checkpoint_every_s=0.01",
         "output.snapshot_every_samples=1", "output.map_every_samples=1")


def overrides(size: int) -> list[str]:
    return [f"lattice.nx={size}", f"lattice.ny={size}", *SHORT]


#: Runs its arguments and prints its children's largest resident set (KiB on Linux). A child's ru_maxrss
#: starts from its parent's resident set at the fork (Linux keeps the larger across exec): the runs are
#: started from this small process, not from this script's, which has imported kmc.
PEAK_OF_CHILD = ("import resource, subprocess, sys; "
                 "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
                 "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def peak_rss_bytes(args: list[str], cwd) -> int:
    """Maximum resident set of a fresh process running ``args`` (bytes)."""
    out = subprocess.run([sys.executable, "-c", PEAK_OF_CHILD, *args], cwd=cwd, capture_output=True, text=True,
                         env={**os.environ, "KMC_NO_PROGRESS": "1"}, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {out.stderr}")
    return int(out.stdout) * 1024


def kmc_run(scenario: str, size: int, out: Path) -> list[str]:
    sets = [a for o in overrides(size) for a in ("--set", o)]
    return [sys.executable, "-c", "import sys; from kmc.cli import main; sys.exit(main())", "run", scenario, "-o",
            str(out), "--overwrite", *sets]


def estimate(scenario: str, size: int) -> memory.Estimate:
    return plan_replicas(kmc.load_scenario(scenario, overrides=overrides(size)), 1).memory()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="32,64,128")
    parser.add_argument("--scenario", default=str(Path(kmc.__file__).parent.parent / "scenarios/validation/T2.toml"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        peak_rss_bytes(kmc_run(args.scenario, 8, Path(tmp, "warm.zarr")), tmp)  # compiles the kernels if needed
        base = peak_rss_bytes(kmc_run(args.scenario, 8, Path(tmp, "base.zarr")), tmp)
        print(f"baseline peak_rss_mib={base / 2**20:.1f}", flush=True)
        for size in (int(s) for s in args.sizes.split(",")):
            est = estimate(args.scenario, size)
            measured = peak_rss_bytes(kmc_run(args.scenario, size, Path(tmp, f"{size}.zarr")), tmp)
            sites = 1
            for v in est.size_keys.values():
                sites *= v
            print(f"memory columns={size}x{size} sites={sites} estimate_mib={est.peak_bytes / 2**20:.1f} "
                  f"measured_mib={measured / 2**20:.1f} error_pct={100 * (est.peak_bytes / measured - 1):+.1f} "
                  f"phase={est.phase.replace(' ', '_')}", flush=True)


if __name__ == "__main__":
    main()
