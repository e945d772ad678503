"""Unions of grids ([[parts]]), the default spec without infeasible points, and fuzzing of specs:
"exit 2 with one line naming the file, or a correct result"."""

from __future__ import annotations

import itertools
import json
import math
import tomllib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import tomli_w
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from models.errors import UserError
from models.params import check_points
from sweep.chunks import chunk_points_frame
from sweep.runner import default_spec_path, run_sweep
from sweep.spec import load_spec, spec_from_canonical, spec_from_dict, spec_from_toml
from sweep.spec_doc import with_profiles

PARTS = """
[sweep]
models = ["analytic"]
[fixed]
n_folios = 256
[axes]
batch_limit_pages = [1, 512]
[[parts]]
fixed = { copy_engine = "cpu" }
axes = { profile = ["epyc-zen3-2s", "xeon-8260l-2s"], folio_kb = [4, 2048] }
[[parts]]
fixed = { profile = "spr-dsa-2s", copy_engine = "dsa" }
axes = { copy_threads = [1, 4] }
"""


def _expected(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The points of a parts spec written out with itertools (common axes first, then the part's)."""
    rows = []
    common = doc.get("axes", {})
    for part in doc.get("parts") or [{}]:
        axes = {**common, **part.get("axes", {})}
        fixed = {**doc.get("fixed", {}), **part.get("fixed", {})}
        for combo in itertools.product(*axes.values()):
            rows.append({**fixed, **dict(zip(axes, combo, strict=True))})
    return rows


def test_parts_are_the_union_of_their_grids_in_order() -> None:
    spec = spec_from_toml(PARTS)
    want = _expected(tomllib.loads(PARTS))
    assert spec.n_points == len(want) == 2 * (2 * 2 + 2)
    got = chunk_points_frame(spec, 0, spec.n_points)
    for name in ("profile", "batch_limit_pages", "folio_kb", "copy_engine", "copy_threads"):
        given_ = [r.get(name) for r in want]
        assert [g if g is not None else v for g, v in zip(given_, got[name], strict=True)] == got[
            name
        ].tolist()
    # Any sub-range decodes to the same rows (chunks straddle the parts' boundary).
    pd.testing.assert_frame_equal(
        chunk_points_frame(spec, 3, 11), got.iloc[3:11].reset_index(drop=True), check_exact=True
    )
    assert spec_from_canonical(spec.canonical()).hash == spec.hash


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("[parts]\nx = 1", "parts"),
        ("[[parts]]\nbogus = 1", "parts[0].bogus"),
        ("[[parts]]\n[parts.axes]\nbatch_limit_pages = [2]", "parts[0].axes.batch_limit_pages"),
        ("[[parts]]\n[parts.axes]\nfolio_kb = [3]", "parts[0].axes.folio_kb[0]"),
        ("[[parts]]\n[parts.fixed]\nn_folios = 5", "parts[0].fixed.n_folios"),
    ],
)
def test_part_errors_name_the_key(body: str, key: str) -> None:
    base = '[sweep]\nmodels = ["analytic"]\n[fixed]\nn_folios = 256\n[axes]\nbatch_limit_pages = [1]\n'
    with pytest.raises(UserError) as info:
        spec_from_toml(base + body, source="p.toml")
    assert str(info.value).startswith(f"p.toml: {key}: ") and "\n" not in str(info.value)


def test_default_sweep_has_no_infeasible_points_and_keeps_every_feasible_one() -> None:
    spec = load_spec(default_spec_path())
    frame = chunk_points_frame(spec, 0, spec.n_points)
    _, reasons = check_points(frame)
    assert spec.n_points == 1089 and (reasons == "").all()
    assert not frame.duplicated().any()
    # The same feasible set as the single grid crossing every value (2,592 points, 1,503 infeasible).
    doc = tomllib.loads(default_spec_path().read_text())
    del doc["parts"]
    doc["axes"] |= {
        "profile": sorted({str(p) for p in frame["profile"]}),
        "folio_kb": [4, 64, 2048],
        "copy_engine": ["cpu", "mt-cpu", "dma", "dsa"],
        "copy_threads": [1, 2, 4, 8],
    }
    grid = spec_from_dict(doc)
    gframe = chunk_points_frame(grid, 0, grid.n_points)
    _, greasons = check_points(gframe)
    assert grid.n_points == 2592 and int((greasons != "").sum()) == 1503
    key = ["profile", "batch_limit_pages", "folio_kb", "copy_engine", "copy_threads"]
    feasible = gframe[greasons == ""][key].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(
        frame[key].sort_values(key).reset_index(drop=True), feasible, check_exact=True
    )


def test_with_profiles_keeps_the_named_profiles_and_crosses_new_ones() -> None:
    doc = tomllib.loads(default_spec_path().read_text())
    two = spec_from_dict(with_profiles(doc, ["grace-2s", "spr-dsa-2s"]))
    frame = chunk_points_frame(two, 0, two.n_points)
    assert set(frame["profile"]) == {"grace-2s", "spr-dsa-2s"}
    assert (check_points(frame)[1] == "").all()
    assert doc == tomllib.loads(default_spec_path().read_text())  # the input is not changed
    new = with_profiles(doc, ["epyc-zen3-2s", "local"])
    assert new["parts"][-1]["axes"]["profile"] == ["local"]
    assert new["parts"][-1]["axes"]["copy_engine"] == ["cpu", "mt-cpu", "dma", "dsa"]


# ------------------------------------------------------------------------------------------------
# fuzzing through the command line

_VALID: dict[str, list[Any]] = {
    "batch_limit_pages": [1, 16, 512, 4096],
    "folio_kb": [4, 64, 2048],
    "copy_engine": ["cpu", "mt-cpu", "dma", "dsa"],
    "copy_threads": [1, 2, 4],
    "profile": ["epyc-zen3-2s", "grace-2s", "spr-dsa-2s"],
}
_INVALID: list[Any] = [0, -1, 3, 1e19, "bogus", True, 2.5, [], {"start": 1}]


@st.composite
def _grid(draw: Any, taken: set[str]) -> dict[str, Any]:
    """Up to two axes with mostly valid values (one in ~6 is not), keys not in ``taken``."""
    out: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from([*_VALID, "x"]), max_size=2, unique=True)):
        if key in taken:
            continue
        pool = _VALID.get(key, [1]) * 3 + _INVALID[:2]
        if draw(st.integers(0, 15)) == 0:
            out[key] = draw(st.sampled_from(_INVALID))
        else:
            out[key] = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True))
    return out


@st.composite
def _docs(draw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"sweep": {"models": ["analytic"]}}
    doc["fixed"] = {"n_folios": draw(st.sampled_from([64, 64, 64, 0, 2.5]))}
    doc["axes"] = draw(_grid(set()))
    if draw(st.booleans()):
        parts = []
        for _ in range(draw(st.integers(0, 3))):
            part: dict[str, Any] = {"axes": draw(_grid(set(doc["axes"])))}
            if "profile" not in doc["axes"] and "profile" not in part["axes"] and draw(st.booleans()):
                part["fixed"] = {"profile": draw(st.sampled_from([*_VALID["profile"], "nope"]))}
            parts.append(part)
        doc["parts"] = parts
    return doc


def _toml(doc: dict[str, Any]) -> str | None:
    try:
        return tomli_w.dumps(doc)
    except (TypeError, ValueError):  # inf and friends have no TOML form through tomli_w
        return None


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(doc=_docs())
def test_fuzz_cli_exit_2_naming_the_file_or_a_correct_result(
    doc: dict[str, Any], tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main

    text = _toml(doc)
    if text is None:
        return
    d = tmp_path_factory.mktemp("fz")
    spec_file, out = d / "fz.toml", d / "out"
    spec_file.write_text(text)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(
            [
                "sweep",
                str(spec_file),
                "--out",
                str(out),
                "--serial",
                "--no-progress",
                "--json",
                "--max-points",
                "400",
            ]
        )
    err = capsys.readouterr()
    if info.value.code != 0:
        event("refused")
        assert info.value.code == 2
        lines = err.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"foliotune: error: {spec_file}"), lines
        assert not out.exists()
        return
    # A correct result: one row per point, the parameters exactly the written-out product, every
    # infeasible point explained, feasible points computed.
    event("computed")
    summary = json.loads(err.out)
    parsed = tomllib.loads(text)
    want = _expected(parsed)
    rows = pd.read_parquet(out)
    assert summary["n_points"] == len(want) == len(rows)
    for i, expected in enumerate(want):
        for name, value in expected.items():
            got = rows.at[i, name]
            assert got == value or (isinstance(value, float) and math.isclose(got, value)), (i, name)
    bad = rows["infeasible"] != ""
    assert rows.loc[~bad, "time_s"].notna().all() and rows.loc[bad, "time_s"].isna().all()
    assert summary["infeasible_points"] == int(bad.sum())


def test_fuzz_helper_matches_a_known_spec(tmp_path: Path) -> None:
    """The fuzz test's independent expectation agrees with a sweep it did not generate."""
    out = tmp_path / "o"
    run_sweep(spec_from_toml(PARTS), out, progress=False, backend="serial")
    rows = pd.read_parquet(out)
    want = _expected(tomllib.loads(PARTS))
    assert [r["copy_engine"] for r in want] == rows["copy_engine"].tolist()
    assert tomli_w.dumps(tomllib.loads(PARTS))
