"""The documentation (``docs/``, ``mkdocs.yml``) builds in strict mode and speaks for itself.

The site is built with ``mkdocs build --strict`` into a temporary directory, so the test suite (and
CI, which runs it) fails on a broken link or anchor, on a generated part that cannot be made, and on a
page that points outside the repository (``docs/hooks/generated.py`` refuses those). The built pages
must then hold every material constant with its value, every scenario key and every store variable,
and name no file that is not in the repository.
"""
from __future__ import annotations

import html
import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HOOK = ROOT / "docs" / "hooks" / "generated.py"
PAGES = ("index", "model", "parameters", "validation", "user-guide", "developer-guide")
#: Paths and names of files outside the repository (the project's specification files).
OUTSIDE = re.compile(r"shared/|\b(?:PHYSICS|VALIDATION|SCHEMA|DESIGN)\.md\b")


def build(config: Path, site: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
                          capture_output=True, text=True, timeout=600, cwd=cwd, check=False)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = build(ROOT / "mkdocs.yml", out / "site", cwd=out)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    return out / "site"


def page(site: Path, name: str) -> str:
    return (site / f"{name}.html").read_text(encoding="utf-8")


def text_of(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", markup))


def table_rows(markup: str) -> list[list[str]]:
    """The cells' text of every table row of a page."""
    return [[text_of(c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.DOTALL)]
            for row in re.findall(r"<tr>(.*?)</tr>", markup, re.DOTALL)]


def test_every_page_is_built(site):
    """Planted fault seen to fail it: a page left out of the nav (strict build: omitted file)."""
    for name in PAGES:
        assert (site / f"{name}.html").is_file(), name


def test_no_page_points_outside_the_repository(site):
    """No link to, and no mention of, shared/ paths or the specification files, on any built page or in
    the search index. Planted fault seen to fail it: "see shared/PHYSICS.md" in model.md (the hook's
    check removed, so the build passes and this test alone catches it)."""
    built = sorted(site.rglob("*.html")) + [site / "search" / "search_index.json"]
    for path in built:
        markup = path.read_text(encoding="utf-8")
        for target in re.findall(r"""(?:href|src)=["']([^"']*)["']""", markup):
            assert not OUTSIDE.search(target), f"{path.name} links outside the repository: {target}"
        found = OUTSIDE.findall(text_of(markup))
        assert not found, f"{path.name} names files outside the repository: {found}"


def test_every_material_constant_is_on_the_parameters_page_with_its_value(site):
    """Every key of scenarios/materials.toml has a row ``table.key`` whose value reads back as the file's.
    Planted fault seen to fail it: the hook skipping the last key of each table."""
    values = tomllib.loads((ROOT / "scenarios" / "materials.toml").read_text(encoding="utf-8"))
    rows = {r[0]: r for r in table_rows(page(site, "parameters")) if r}
    for table, keys in values.items():
        for key, value in keys.items():
            row = rows.get(f"{table}.{key}")
            assert row is not None, f"{table}.{key} is not on the parameters page"
            assert tomllib.loads(f"v = {row[1]}")["v"] == value, f"{table}.{key}: page {row[1]}, file {value!r}"
            assert row[3] in ("sourced", "prior") or row[3].startswith("calibrated on "), row


def test_every_scenario_key_step_key_and_store_variable_is_in_the_user_guide(site):
    """Planted fault seen to fail it: the hook leaving out the [numerics] table."""
    from kmc.config import SCHEMA, STEP_KINDS, load_scenario
    from kmc.model import model_for
    from kmc.store import RUN_VARS

    cells = {r[0] for r in table_rows(page(site, "user-guide")) if r}
    for table, keys in SCHEMA.items():
        for name in keys:
            assert f"{table}.{name}" in cells, f"scenario key {table}.{name} is not in the user guide"
    guide = text_of(page(site, "user-guide"))
    for kind, spec in STEP_KINDS.items():
        assert f'kind = "{kind}"' in guide
        assert set(spec.keys) <= cells, f"keys of a {kind} step missing from the user guide"
    layout = model_for(load_scenario(ROOT / "scenarios" / "validation" / "T5.toml")).layout()
    for var in list(RUN_VARS) + layout.variables:
        assert var.name in cells, f"store variable {var.name} is not in the user guide"


# -- the build refuses what it must refuse -----------------------------------------------------------

#: A planted reference, and what the failed build says about it.
PLANTED = {
    "a link to a page that is not there": ("[the flaws](flaws.md)", r"'flaws\.md'.*not found"),
    "a link to a section that is not there": ("[the flaws](model.md#no-such-section)",
                                              r"does not contain an anchor '#no-such-section'"),
    "a mention of a specification file": ("The model is specified in PHYSICS.md.",
                                          r"must not point outside the repository.*PHYSICS\.md"),
}


@pytest.mark.parametrize("planted", list(PLANTED))
def test_the_build_fails_on_a_broken_or_outside_reference(planted, tmp_path):
    """A copy of the docs with one planted reference fails the strict build, naming it."""
    shutil.copytree(ROOT / "docs", tmp_path / "docs", ignore=shutil.ignore_patterns("hooks"))
    index = tmp_path / "docs" / "index.md"
    reference, message = PLANTED[planted]
    index.write_text(index.read_text(encoding="utf-8") + f"\n{reference}\n", encoding="utf-8")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    config.update(docs_dir=str(tmp_path / "docs"), hooks=[str(HOOK)])
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    result = build(tmp_path / "mkdocs.yml", tmp_path / "site", cwd=tmp_path)
    assert result.returncode != 0, f"the build passed with {planted}"
    assert re.search(message, result.stderr + result.stdout), result.stderr


@pytest.fixture(scope="module")
def hook():
    saved = list(sys.path)
    spec = importlib.util.spec_from_file_location("docs_hook", HOOK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.path[:] = saved
    return module


@pytest.mark.parametrize("content, page_url", [
    ('<p><a href="https://example.org/paper">a paper</a></p>', "model.html"),
    ('<p><a href="//example.org/">a host</a></p>', "model.html"),
    ('<p><a href="/etc/passwd">an absolute path</a></p>', "model.html"),
    ('<p><a href="../README.md">the README</a></p>', "model.html"),
    ('<p><a href="../../x.html">out of the site</a></p>', "sub/page.html"),
    ('<p><img src="../shared/figure.png"></p>', "model.html"),
    ("<p>the model is in shared/PHYSICS.md</p>", "model.html"),
    ("<p>see DESIGN.md</p>", "model.html"),
])
def test_the_hook_finds_references_outside_the_repository(hook, content, page_url):
    assert hook.outside_references(content, page_url)


def test_the_hook_accepts_references_inside_the_site(hook):
    content = ('<p><a href="model.html#s5">model §5</a> <a href="#roles">roles</a> '
               '<a href="sub/page.html">a sub page</a> from <code>kmc.config.SCHEMA</code></p>')
    assert hook.outside_references(content, "parameters.html") == []
    assert hook.outside_references('<a href="../model.html">up</a>', "sub/page.html") == []


def test_quoted_mentions_of_the_specification_become_the_projects_own(hook):
    """What the materials' comments say about the specification, as these pages say it."""
    own = hook.own_words
    assert own("a value (PHYSICS §8), midpoint") == "a value, midpoint"
    assert own("(PHYSICS §8, handbook; HV 40)") == "(handbook; HV 40)"
    assert own("source: PHYSICS §1, §5 E7: insulators") == "source: [model §5](model.md#s5) E7: insulators"
    assert own("the paper or VALIDATION.md row") == "the paper or [validation](validation.md) row"
    assert not hook.OUTSIDE_TEXT.search(own("PHYSICS.md, PHYSICS §4 and SCHEMA.md"))


# -- the probes the model page quotes ----------------------------------------------------------------

PROBES = sorted((ROOT / "scenarios" / "probes").glob("*.toml"))


@pytest.mark.parametrize("path", PROBES, ids=[p.stem for p in PROBES])
def test_probe_scenarios_load_and_build_a_model(path):
    """The v4 probes docs/model.md quotes stay runnable: they load with the shipped materials, switch on the
    laws they say they do, and a model builds from them (a renamed key or option fails here, not in a
    reader's hands)."""
    from kmc.config import load_scenario
    from kmc.model import model_for

    assert path.name in (ROOT / "docs" / "model.md").read_text(encoding="utf-8")
    sc = load_scenario(path)
    assert sc.data["model"]["flaw_law"] == "slot" and sc.data["electrolyte"]["relief"] == "self_affine"
    assert model_for(sc).layout().variables
