"""Sweep specs: the contract form, axis forms, one-line errors (exit 2, no folder) and a parser fuzz."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.errors import UserError
from models.params import PARAMETERS
from sweep.spec import SpecError, spec_from_dict, spec_from_toml

CONTRACT = """
[sweep]
seed = 7
models = ["analytic", "montecarlo"]
replicas = 64
sampler = "grid"
[fixed]
profile = "epyc-zen3-2s"
[axes]
batch_limit_pages = [1, 16, 64, 256, 512, 1024, 4096]
folio_kb = [4, 64, 2048]
copy_engine = ["cpu", "mt-cpu", "dma"]
copy_threads = [1, 4, 16]
"""


def test_contract_spec_parses_with_size_and_stable_hash() -> None:
    spec = spec_from_toml(CONTRACT)
    assert spec.n_points == 7 * 3 * 3 * 3
    assert spec.n_rows == 2 * spec.n_points
    assert spec.models == ("analytic", "montecarlo")
    assert [a.name for a in spec.axes] == ["batch_limit_pages", "folio_kb", "copy_engine", "copy_threads"]
    # The hash covers what determines results, not where they go or comments/formatting.
    again = spec_from_toml("# comment\n" + CONTRACT.replace("seed = 7", 'seed = 7\nout = "x"\nname = "n"'))
    assert again.hash == spec.hash
    assert spec_from_toml(CONTRACT.replace("seed = 7", "seed = 8")).hash != spec.hash
    assert spec_from_toml(CONTRACT.replace("[1, 4, 16]", "[1, 4]")).hash != spec.hash


def test_axis_forms() -> None:
    spec = spec_from_toml(
        """
        [sweep]
        [axes]
        folio_kb = { log2_start = 2, log2_stop = 11 }
        n_folios = { start = 100, stop = 100000, num = 4, log = true }
        busy_prob = { start = 0.0, stop = 0.2, num = 5 }
        copy_threads = { start = 1, stop = 16, step = 5 }
        profile = ["epyc-zen3-2s", "grace-2s"]
        """
    )
    ax = {a.name: a.values for a in spec.axes}
    assert ax["folio_kb"] == tuple(2**k for k in range(2, 12))
    assert ax["n_folios"] == (100, 1000, 10000, 100000)
    assert np.allclose(ax["busy_prob"], [0.0, 0.05, 0.1, 0.15, 0.2])
    assert ax["copy_threads"] == (1, 6, 11, 16)
    assert spec.n_points == 10 * 4 * 5 * 4 * 2


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("[sweep]\nsede = 1", "sweep.sede"),
        ("[sweep]\n[axes]\nbatch_size = [1]", "axes.batch_size"),
        ("[sweep]\n[fixed]\nfolio_kib = 4", "fixed.folio_kib"),
        ("[sweep]\n[axes]\nbatch_limit_pages = []", "axes.batch_limit_pages"),
        ("[sweep]\n[axes]\nn_folios = { start = 10, stop = 1, step = 1 }", "axes.n_folios"),
        ("[sweep]\n[axes]\nn_folios = { start = 1, stop = 10 }", "axes.n_folios"),
        ("[sweep]\n[axes]\nn_folios = { start = 0, stop = 10, num = 3, log = true }", "axes.n_folios"),
        ("[sweep]\n[axes]\nn_folios = { start = 1, stop = 10, nun = 3 }", "axes.n_folios.nun"),
        ("[sweep]\n[axes]\nfolio_kb = [4, 6]", "axes.folio_kb[1]"),
        ("[sweep]\nsampler = 'halton'", "sweep.sampler"),
        ("[sweep]\nsampler = 'sobol'\n[axes]\nbusy_prob = { start = 0, stop = 1 }", "sweep.n"),
        ("[sweep]\nmodels = ['analytic', 'neural']", "sweep.models"),
        ("[sweep]\n[fixed]\nprofile = 'pentium-ii'", "fixed.profile"),
        ("[sweep]\n[axes]\nprofile = ['epyc-zen3-2s', 'pentium-ii']", "axes.profile[1]"),
        ("[sweep]\n[axes]\ncopy_engine = ['cpu', 'gpu']", "axes.copy_engine[1]"),
        ("[sweep]\n[axes]\nbusy_prob = [0.1, 1.5]", "axes.busy_prob[1]"),
        ("[sweep]\nreplicas = 0", "sweep.replicas"),
        ("[sweep]\n[fixed]\nmode = 'async'\n[axes]\nmode = ['sync']", "fixed.mode"),
        ("[sweeps]\nseed = 1", "sweeps"),
        ("[axes]\nfolio_kb = [4]", "sweep"),
        ("[sweep]\nseed = ", "not valid TOML"),
    ],
)
def test_spec_errors_name_the_key(body: str, key: str) -> None:
    with pytest.raises(SpecError) as info:
        spec_from_toml(body, source="s.toml")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("s.toml: ")
    assert key in msg


def test_cli_spec_error_is_one_line_exit_2_and_creates_no_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main

    spec = tmp_path / "bad.toml"
    spec.write_text("[sweep]\nmodels = ['analytic']\n[axes]\nbatch_limit_pages = [1, 512]\nfolio_kib = [4]\n")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        main(["sweep", str(spec), "--out", str(out), "--no-progress"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("foliotune: error: ")
    assert "axes.folio_kib" in err[0]
    assert not out.exists()


def test_cli_max_points_guard_reports_estimate_and_creates_no_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main

    spec = tmp_path / "big.toml"
    spec.write_text(
        "[sweep]\nmodels = ['analytic']\n[axes]\nn_folios = { start = 1, stop = 1000000, step = 1 }\n"
        "busy_prob = { start = 0, stop = 1, num = 1000 }\n"
    )
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        main(["sweep", str(spec), "--out", str(out), "--max-points", "1000"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "1,000,000,000 rows" in err and "--max-points" in err and "estimated about" in err
    assert not out.exists()


# ---------------------------------------------------------------------------------------- fuzz

_scalars = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(["epyc-zen3-2s", "cpu", "dma", "sync", "analytic", "montecarlo", "grid", "sobol", "lhs"]),
)
_range_keys = st.sampled_from(
    ["start", "stop", "num", "step", "log", "log2_start", "log2_stop", "log2_step", "x"]
)
_values = st.one_of(
    _scalars,
    st.lists(_scalars, max_size=5),
    st.dictionaries(_range_keys, _scalars, max_size=4),
)
_param_keys = st.one_of(st.sampled_from(PARAMETERS), st.text(max_size=8))
_sweep_keys = st.sampled_from(["seed", "models", "replicas", "sampler", "n", "out", "name", "bogus"])
_docs = st.fixed_dictionaries(
    {},
    optional={
        "sweep": st.one_of(st.dictionaries(_sweep_keys, _values, max_size=6), _scalars),
        "fixed": st.one_of(st.dictionaries(_param_keys, _values, max_size=4), _scalars),
        "axes": st.one_of(st.dictionaries(_param_keys, _values, max_size=4), _scalars),
        "extra": _values,
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_docs)
def test_fuzz_parser_never_tracebacks(doc: dict) -> None:
    try:
        spec = spec_from_dict(doc, source="fuzz.toml")
    except UserError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("fuzz.toml: ")
        return
    # A spec that parses is usable: its size is defined and its axes are non-empty.
    assert spec.n_points >= 1
    assert all(a.values or a.high > a.low for a in spec.axes)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_toml_text_never_tracebacks(text: str) -> None:
    try:
        spec_from_toml(text, source="t.toml")
    except UserError as exc:
        assert "\n" not in str(exc)


def test_grid_order_is_itertools_product() -> None:
    from sweep.samplers import axis_columns

    spec = spec_from_toml(CONTRACT)
    cols = axis_columns(spec, 0, spec.n_points)
    expected = list(itertools.product(*(a.values for a in spec.axes)))
    got = list(zip(*(cols[a.name].tolist() for a in spec.axes), strict=True))
    assert got == expected


@pytest.mark.parametrize("section", ["fixed", "axes"])
def test_a_key_with_a_newline_is_named_on_one_line(section: str) -> None:
    """The case the fuzz test found: a TOML key may hold a newline; the error shows it escaped."""
    with pytest.raises(UserError) as exc:
        spec_from_dict({"sweep": {}, section: {"bad\nkey": 0}}, source="fuzz.toml")
    assert str(exc.value).startswith(f"fuzz.toml: {section}.bad\\nkey: unknown parameter")
    assert "\n" not in str(exc.value)
