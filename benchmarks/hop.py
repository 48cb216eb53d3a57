"""The hop benchmark (same as `kmc bench`): python benchmarks/hop.py [--sizes 22,46,100] [--seconds 2]."""
from kmc.cli import bench

if __name__ == "__main__":
    bench()
