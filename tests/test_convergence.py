"""``kmc converge``: the statistics and verdict on known values, the variants' lattices, the comment
block for the scenario file, bad input, and the command end to end (its runs replaced by synthetic
summaries; one real tiny study is ``slow``).
"""
import datetime
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from kmc import convergence as cv
from kmc import validate as orchestration
from kmc import validation as val
from kmc.cli import main
from kmc.errors import KmcError

DATE = datetime.date(2026, 12, 3)


def summary(*, shorted=None, lattice_text="", **final):
    """A run summary like ``ds.kmc.summary()``: ``final_<name>`` per run from the keywords."""
    n = len(next(iter(final.values()))) if final else len(shorted)
    ds = xr.Dataset(coords={"run": np.arange(n)})
    ds["status"] = ("run", np.full(n, 2, dtype=np.int8))
    ds["shorted"] = ("run", np.asarray(shorted if shorted is not None else [0] * n, dtype=np.int8))
    for name, values in final.items():
        key = name if name == "short_charge" else f"final_{name}"
        ds[key] = ("run", np.asarray(values, dtype=float))
    ds.attrs["lattice_text"] = lattice_text
    return ds


def t3(base, half, double):
    """T3 summaries by variant: interfacial resistance per run."""
    return {v: {"T3": summary(interfacial_resistance=r, lattice_text=v)}
            for v, r in zip(cv.VARIANTS, (base, half, double))}


T3_ROW = next(r for r in val.ROWS if r.id == "T3")
T1_ROW = next(r for r in val.ROWS if r.id == "T1")


# ---------------------------------------------------------------------------------------------
# Statistics and verdict
# ---------------------------------------------------------------------------------------------

def test_median_and_iqr_on_known_values():
    """Median and quartiles interpolated between order statistics (type 7): 1..8 has median 4.5,
    Q25 = 2.75, Q75 = 6.25, IQR 3.5; +inf ("no short") runs move the upper quantiles to +inf, and all
    "no short" has median +inf and IQR 0, not NaN.
    Planted fault seen to fail it: the nearest-rank quantile (x[round(h)]) in ``quantile``."""
    s = cv.spread_of(np.arange(1.0, 9.0))
    assert (s.statistic, s.q25, s.q75, s.iqr, s.n) == (4.5, 2.75, 6.25, 3.5, 8)
    for q in (0.25, 0.5, 0.75):
        assert cv.quantile(np.array([3.0, 1.0, 10.0, 4.0, 2.0]), q) == np.percentile([3, 1, 10, 4, 2], 100 * q)
    censored = cv.spread_of(np.array([0.02, 0.05, math.inf, math.inf]))
    assert censored.q25 == pytest.approx(0.0425) and censored.statistic == math.inf and censored.iqr == math.inf
    none_shorted = cv.spread_of(np.full(8, math.inf))
    assert none_shorted.statistic == math.inf and none_shorted.iqr == 0.0
    assert math.isnan(cv.spread_of(np.array([])).statistic)


def test_share_spread_is_the_binomial_iqr_of_the_share():
    """A share of 8 replicas: 4/8 has the quartiles of Binomial(8, 0.5)/8, 3/8 and 5/8 (IQR 0.25,
    by hand: P(K ≤ 2) = 0.145, P(K ≤ 3) = 0.363, P(K ≤ 4) = 0.637, P(K ≤ 5) = 0.855); 0/8 and 8/8 keep
    the uncertainty of 8 replicas through p̃ = (k + ½)/(n + 1): IQR 1/8, not 0.
    Planted fault seen to fail it: p̃ = k/n (0/8 then has IQR 0)."""
    half = cv.spread_of(np.array([1, 1, 1, 1, 0, 0, 0, 0.0]), share=True)
    assert (half.statistic, half.q25, half.q75, half.iqr, half.k) == (0.5, 3 / 8, 5 / 8, 0.25, 4)
    for k in (0, 8):
        s = cv.spread_of(np.array([1.0] * k + [0.0] * (8 - k)), share=True)
        assert s.statistic == k / 8 and s.iqr == pytest.approx(1 / 8)


def test_a_small_move_passes_a_moved_median_fails():
    """Base 7.0..7.4 (median 7.2, IQR 0.2): half voxel at median 7.3 (moved 0.1) passes, double domain
    at 7.5 (moved 0.3) fails, so the row does not converge; both at 7.3 it converges. A move equal to
    the IQR fails (strictly less), a variant without values fails, and the variants' own (smaller) IQR
    is not the one used.
    Planted faults seen to fail it: the criterion against the variant's IQR; ``<=`` for ``<``."""
    base = [7.0, 7.1, 7.2, 7.3, 7.4]
    (q,) = cv.judge(T3_ROW, t3(base, [7.3] * 5, [7.5] * 5))
    assert q.spreads["base"].statistic == pytest.approx(7.2) and q.spreads["base"].iqr == pytest.approx(0.2)
    assert q.moved("half_voxel") == pytest.approx(0.1) and q.passes("half_voxel")
    assert q.moved("double_domain") == pytest.approx(0.3) and not q.passes("double_domain")
    assert not q.converged
    (q,) = cv.judge(T3_ROW, t3(base, [7.25, 7.3, 7.35], [7.3] * 5))
    assert q.spreads["half_voxel"].iqr < 0.1 and q.converged
    assert not cv.within(0.25, 0.25) and cv.within(0.0, 0.0)
    (q,) = cv.judge(T3_ROW, t3(base, [math.nan] * 5, base))
    assert not q.converged and "none" in q.move_text("half_voxel")


def test_rows_that_do_not_short_converge_on_their_share_and_censored_charge():
    """T1 where no run shorts in any variant: share 0/8 everywhere (move 0) and every short charge "no
    short" (+inf, move 0): converged. One variant with 2/8 shorted moves the share by 0.25 ≥ 1/8: not.
    Planted fault seen to fail it: ``move`` as a plain abs(a − b) (inf − inf = NaN fails the row)."""
    def t1(k_half):
        out = {}
        for v in cv.VARIANTS:
            k = k_half if v == "half_voxel" else 0
            out[v] = {"T1": summary(shorted=[1] * k + [0] * (8 - k),
                                    short_charge=[0.1] * k + [math.nan] * (8 - k))}
        return out

    share, charge = cv.judge(T1_ROW, t1(0))
    assert share.metric.share and share.spreads["base"].statistic == 0.0
    assert share.converged and charge.converged and charge.spreads["base"].statistic == math.inf
    share, charge = cv.judge(T1_ROW, t1(2))
    assert share.moved("half_voxel") == 0.25 and not share.converged


def test_a_move_against_an_unbounded_iqr_is_not_judged_converged():
    """A CCD whose base runs do not short in 3 of 8 replicas (Q75 "no short", IQR +inf, median 2.5 —
    D2's study at 32²): variants at medians 0.9 and 1.0 moved 1.6 and 1.5, which any finite IQR would
    judge; an unbounded one judges nothing, so the row does not converge. A move of 0 (every variant "no
    short") still passes. Planted fault seen to fail it: ``within`` without its unbounded-IQR case."""
    assert not cv.within(1.6, math.inf) and cv.within(0.0, math.inf)
    out = {}
    for v, ccd in (("base", [1.0, 2.0, 2.2, 2.4, 2.6, math.inf, math.inf, math.inf]),
                   ("half_voxel", [0.4, 0.6, 0.8, 0.8, 1.0, 1.2, 1.4, 1.6]),
                   ("double_domain", [0.6, 0.8, 0.8, 1.0, 1.0, 1.2, 1.6, 2.0])):
        out[v] = {"T1": summary(shorted=[int(math.isfinite(c)) for c in ccd],
                                short_charge=[c if math.isfinite(c) else math.nan for c in ccd])}
    share, charge = cv.judge(T1_ROW, out)
    assert charge.spreads["base"].iqr == math.inf and charge.moved("half_voxel") > 1.0
    assert not charge.converged and "not judged" in charge.move_text("half_voxel")


def test_a_cutoff_is_judged_by_whether_it_is_reached_not_by_its_overshoot():
    """T4's final voltage: every run ends at the 1.5 V cut-off, a fraction of a mV past it (base IQR
    0.05 mV), and variants whose medians overshoot 0.2 mV more are converged — they reach it as the base
    does. A variant whose median stops short of it (a run that shorted) is not, nor one without values.
    Planted fault seen to fail it: the cut-off judged against the IQR like any other quantity."""
    row = next(r for r in val.ROWS if r.id == "T4")
    (metric,) = [m for m in row.metrics if m.cutoff]

    def t4(base, half, double):
        return {v: {"T4": summary(voltage=x)} for v, x in zip(cv.VARIANTS, (base, half, double))}

    base = [1.50010, 1.50012, 1.50015, 1.50017, 1.50020]
    q = next(q for q in cv.judge(row, t4(base, [1.50035] * 5, [1.50040] * 5)) if q.metric is metric)
    assert q.moved("half_voxel") > q.spreads["base"].iqr  # a move the IQR would fail
    assert q.converged and "reaches it as in the base" in q.move_text("half_voxel")
    q = next(q for q in cv.judge(row, t4(base, [0.0] * 5, [1.5004] * 5)) if q.metric is metric)
    assert not q.passes("half_voxel") and q.passes("double_domain") and not q.converged
    assert "unlike the base" in q.move_text("half_voxel")
    q = next(q for q in cv.judge(row, t4(base, [math.nan] * 5, [1.5004] * 5)) if q.metric is metric)
    assert not q.converged


# ---------------------------------------------------------------------------------------------
# Variants
# ---------------------------------------------------------------------------------------------

def test_half_voxel_doubles_nx_ny_nz_double_domain_doubles_nx_ny():
    """From T3 at 16×12 columns (48 voxels high, 0.5 µm): the halved voxel is 0.25 µm on 32×24×96 — the
    same 8 × 6 × 24 µm domain; the doubled domain 32×24×48 of 0.5 µm. Every other key as the base.
    Planted fault seen to fail it: nz left as the base's in the half-voxel variant."""
    target = cv.resolve("T3", {"lattice.nx": 16, "lattice.ny": 12})
    scenarios = cv.variant_scenarios(target)
    lattice = {v: scenarios["T3", v].data["lattice"] for v in cv.VARIANTS}
    assert lattice["base"] == {"voxel_um": 0.5, "nx": 16, "ny": 12, "nz": 48}
    assert lattice["half_voxel"] == {"voxel_um": 0.25, "nx": 32, "ny": 24, "nz": 96}
    assert lattice["double_domain"] == {"voxel_um": 0.5, "nx": 32, "ny": 24, "nz": 48}
    for v in cv.VARIANTS:
        rest = {k: x for k, x in scenarios["T3", v].data.items() if k != "lattice"}
        assert rest == {k: x for k, x in scenarios["T3", "base"].data.items() if k != "lattice"}


def test_targets_a_row_a_scenario_of_it_or_a_file(tmp_path):
    """D1 studies both its scenarios and its three quantities; D1_foil only the foil's CE; a copy of T3.toml
    under another file name is T3 by its [scenario] name; a file of another name is refused."""
    d1 = cv.resolve("d1")
    assert [c.name for c in d1.cases] == ["D1_foil", "D1_pellet"] and len(d1.row.metrics) == 3
    foil = cv.resolve("D1_foil")
    assert [m.quantity for m in foil.row.metrics] == ["foil CE [%]"]
    copy = tmp_path / "t3_candidate.toml"
    copy.write_text(val.scenario_file("T3").read_text())
    target = cv.resolve(str(copy), {"lattice.nx": 20})
    assert target.row.id == "T3" and target.base["T3"].data["lattice"]["nx"] == 20
    other = tmp_path / "mine.toml"
    other.write_text(val.scenario_file("T3").read_text().replace('name = "T3"', 'name = "mine"'))
    with pytest.raises(KmcError, match=r"scenario.name = 'mine'"):
        cv.resolve(str(other))


# ---------------------------------------------------------------------------------------------
# The comment block
# ---------------------------------------------------------------------------------------------

def test_the_block_is_a_toml_comment_with_the_studys_numbers():
    """The block pasted above T3's [lattice] leaves the file's TOML as it was, every line a comment, and
    carries the command, the date, each variant's lattice, median and IQR, the moves and the verdict —
    also with a --set value holding a newline (escaped in the command it quotes).
    Planted fault seen to fail it: the block's lines joined without escaping (the newline ends the comment)."""
    target = cv.resolve("T3")
    sets = ['scenario.description="two\nlines"']
    study = cv.Study(target, 8, cv.command_line("T3", 8, sets), Path("convergence-T3"))
    study.quantities = cv.judge(T3_ROW, t3([7.0, 7.1, 7.2, 7.3, 7.4], [7.3] * 5, [7.5] * 5))
    block = study.block(DATE)
    lines = block.split("\n")
    assert all(line.startswith("#") for line in lines) and len(lines) == 6
    assert lines[0].startswith("# convergence (kmc converge T3 --replicas 8 --set scenario.description=")
    assert "2026-12-03" in lines[0]
    assert "base base: 7.20 (IQR 0.20, n 5)" in lines[2]
    assert "moved 0.10 < 0.20" in lines[3] and "moved 0.30 >= 0.20" in lines[4]
    assert lines[5].startswith("#   NOT converged") and "double domain" in lines[5] and "half voxel" not in lines[5]
    text = val.scenario_file("T3").read_text()
    pasted = text.replace("[lattice]", block + "\n[lattice]", 1)
    assert block in pasted and tomllib.loads(pasted) == tomllib.loads(text)


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------

def invoke(*args):
    return CliRunner().invoke(main, ["converge", *map(str, args)], env={"KMC_NO_PROGRESS": "1"})


@pytest.mark.parametrize("args, named", [
    (["T9"], "ROW_OR_SCENARIO = 'T9'"),
    (["T3", "--set", "lattice.bogus=1"], "lattice.bogus = 1"),
    (["T3", "--set", "lattice.nx"], "lattice.nx"),
    (["T3", "--set", "lattice.voxel_um=0.0015"], "lattice.voxel_um = 0.00075"),   # the halved voxel
    (["T3", "--replicas", "1"], "--replicas"),
    (["missing.toml"], "missing.toml"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, args, named):
    """Each bad input: exit 2, one line on stderr naming the key or value, no output directory.
    Planted fault seen to fail it: DIR created before the target and the --set keys are checked."""
    out = tmp_path / "study"
    result = invoke(*args, "-o", out)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("kmc: error:") and named in result.stderr
    assert result.stdout == "" and not out.exists()


def test_converge_runs_three_variants_with_the_same_seeds_and_prints_the_verdict(tmp_path, monkeypatch):
    """`kmc converge T3 --set lattice.nx=8 --set lattice.ny=8 --replicas 3` with the runs replaced by
    synthetic summaries: three stores planned, the halved voxel's first, with the same seeds; the table
    and block name each variant's lattice with its own numbers (base 7.1, half voxel 7.15, double domain
    6.5: moved 0.60 ≥ IQR 0.10, NOT converged), and the block is written beside the stores.
    Planted fault seen to fail it: the half-voxel store's summary filed under the doubled domain."""
    planned_seen = []
    numbers = {"base": [7.0, 7.1, 7.2], "half_voxel": [7.1, 7.15, 7.2], "double_domain": [6.4, 6.5, 6.6]}

    def run_planned(planned, workers, progress, report):
        planned_seen.extend(planned)
        return {}

    def summaries(planned):
        return {cs.case.name: summary(interfacial_resistance=numbers[cs.case.name.removeprefix("T3_")])
                for cs in planned}

    monkeypatch.setattr(orchestration, "_run_planned", run_planned)
    monkeypatch.setattr(orchestration, "summaries", summaries)
    out = tmp_path / "study"
    result = invoke("T3", "--set", "lattice.nx=8", "--set", "lattice.ny=8", "--replicas", 3, "-o", out)
    assert result.exit_code == 0, result.output
    assert [cs.case.name for cs in planned_seen] == ["T3_half_voxel", "T3_double_domain", "T3_base"]
    assert all(cs.plan.seeds == planned_seen[0].plan.seeds for cs in planned_seen)
    block = result.stdout[result.stdout.index("# convergence"):].strip()
    assert block.startswith("# convergence (kmc converge T3 --replicas 3 --set lattice.nx=8 --set lattice.ny=8, ")
    assert "base 8x8x48 of 0.5 um: 7.10 (IQR 0.10, n 3)" in block
    assert "half voxel 16x16x96 of 0.25 um: 7.15 (IQR 0.05, n 3), moved 0.05 < 0.10" in block
    assert "double domain 16x16x48 of 0.5 um: 6.50 (IQR 0.10, n 3), moved 0.60 >= 0.10" in block
    assert "NOT converged" in result.stdout and "a trial" in result.stderr
    assert (out / cv.BLOCK_FILE).read_text() == block + "\n"


@pytest.mark.slow
def test_a_real_tiny_study_runs_and_reuses_its_stores(tmp_path):
    """T3 on 4² columns, 2 replicas, one worker: three stores of the variants' lattices and the same
    seeds, every run done; the same command again reuses them (same block)."""
    import kmc

    out = tmp_path / "study"
    args = ["T3", "--set", "lattice.nx=4", "--set", "lattice.ny=4", "--replicas", 2, "--workers", 1, "-o", out]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    shapes = {v: kmc.open(str(out / f"T3_{v}.zarr")).sizes for v in cv.VARIANTS}
    assert (shapes["half_voxel"]["x"], shapes["half_voxel"]["z"]) == (8, 96)
    assert (shapes["double_domain"]["x"], shapes["double_domain"]["z"]) == (8, 48)
    seeds = {v: list(kmc.open(str(out / f"T3_{v}.zarr")).seed.values) for v in cv.VARIANTS}
    assert seeds["base"] == seeds["half_voxel"] == seeds["double_domain"]
    again = invoke(*args)
    assert again.exit_code == 0 and "reusing 2 finished run(s)" in again.stderr
    assert again.stdout == first.stdout
