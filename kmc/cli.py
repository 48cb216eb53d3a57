"""The ``kmc`` command line.

Every error a user can cause (a ``KmcError``) is printed as one line naming the key and what is
allowed, and exits with code 2.
"""
from __future__ import annotations

import sys

import click

from kmc import __version__
from kmc.errors import KmcError


class _Group(click.Group):
    """Turns KmcError into a one-line message and exit code 2, whatever the subcommand."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KmcError as err:
            click.echo(f"kmc: error: {err}", err=True)
            sys.exit(err.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="kmc")
def main():
    """Kinetic Monte Carlo of anode-free sodium solid-state batteries.

    Na is plated in situ between a current collector and a solid electrolyte; the simulator follows
    nucleation, growth, contact under stack pressure, filaments and voids on a 3D voxel lattice in
    physical units, and writes trajectories to Zarr stores for xarray.

    \b
    Commands:
      bench   the engine benchmark (events per second on the hop model)

    Run `kmc COMMAND --help` for the options of a command. Exit codes: 0 success, 1 a run failed,
    2 bad input (nothing written), 3 stopped by a signal after a checkpoint.
    """


def _parse_sizes(ctx, param, value):
    try:
        sizes = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated integers, e.g. 22,46,100")
    if any(s < 2 for s in sizes):
        raise click.BadParameter(f"{value!r}: every size must be at least 2")
    return sizes


@main.command()
@click.option("--sizes", default="22,46,100", show_default=True, callback=_parse_sizes,
              help="Lattice edges L (comma-separated); each run is a periodic L×L×L lattice.")
@click.option("--fraction", default=0.5, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Fraction of sites occupied.")
@click.option("--seconds", "min_seconds", default=2.0, show_default=True, type=click.FloatRange(min=0.0),
              help="Minimum wall time of timed events per run, after warm-up.")
@click.option("--model", "models", type=click.Choice(["hop", "hop-random"]), multiple=True,
              help="Model(s) to run; default both. hop-random draws per-site rate multipliers "
                   "log-uniformly over 3 decades.")
@click.option("--seed", default=1, show_default=True, type=int, help="Seed of each run's generator.")
def bench(sizes, fraction, min_seconds, models, seed):
    """The engine benchmark: events per second of the hop model.

    The hop model is the common benchmark of lattice KMC engines: a periodic L³ simple-cubic
    lattice, a fraction of sites occupied at random, each particle hopping to each empty first
    neighbour at rate 1. It runs through the same solver as the battery model. One line per run:

    \b
      hop L=<L> sites=<n> events=<n> seconds=<s> events_per_s=<r> state_bytes_per_site=<b> peak_rss_mb=<m>

    (`hop-random` for the variant). peak_rss_mb is the process's peak so far, compiler included.
    """
    from kmc.bench import run_benchmarks

    run_benchmarks(sizes, fraction, min_seconds, models or ("hop", "hop-random"), seed)
