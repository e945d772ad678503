"""Hardware profiles: shipped files are complete and sourced; bad files name the field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from models.profiles import (
    FIELDS,
    PROFILE_DIR,
    ProfileError,
    dump_profile_toml,
    get_profile,
    load_profile_file,
    profile_names,
)

SHIPPED = ("xeon-e5-2650v3-2s", "epyc-zen3-2s", "xeon-8260l-2s", "kunpeng920-2s", "grace-2s", "spr-dsa-2s")


def test_shipped_profiles_exist_and_every_number_has_a_source() -> None:
    assert set(SHIPPED) <= set(profile_names())
    for name in SHIPPED:
        p = get_profile(name)
        assert set(p.sources) == set(FIELDS)
        assert all(s.strip() for s in p.sources.values())


def test_dsa_profile_says_its_dsa_figures_are_assumed() -> None:
    p = get_profile("spr-dsa-2s")
    assert "dsa" in p.copy_engines
    assert all(p.sources[k].startswith("assumed") for k in FIELDS if k.startswith("dsa_"))


def test_profiles_are_frozen() -> None:
    p = get_profile("epyc-zen3-2s")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        p.values["cores"] = 3  # type: ignore[index]


def test_round_trip_through_file(tmp_path: Path) -> None:
    p = get_profile("grace-2s")
    f = tmp_path / "g.toml"
    f.write_text(dump_profile_toml(p))
    q = load_profile_file(f)
    assert dict(q.values) == pytest.approx(dict(p.values))
    assert dict(q.sources) == dict(p.sources)


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    text = (PROFILE_DIR / "epyc-zen3-2s.toml").read_text()
    assert old in text
    f = tmp_path / "bad.toml"
    f.write_text(text.replace(old, new, 1))
    return f


@pytest.mark.parametrize(
    "old,new,field",
    [
        ("cores = { value = 32,", "cores = { value = -1,", "cores"),
        ("cores = { value = 32,", "cores = { value = 3.5,", "cores"),
        (
            "cpu_copy_gbps = { value = 12.0, source = ",
            "cpu_copy_gbps = { value = 12.0, sauce = ",
            "cpu_copy_gbps",
        ),
        ('cpu_ghz = { value = 2.45, source = "assumed" }\n', "", "cpu_ghz"),
        ('mt_sigma = { value = 0.12, source = "', 'mt_sigma = { value = "x", source = "', "mt_sigma"),
        ('flush_mechanism = "ipi"', 'flush_mechanism = "smoke"', "flush_mechanism"),
        ('"dma",', '"warp",', "copy_engines"),
        (
            'call_setup_us = { value = 5.0, source = "',
            'call_setup_us = { value = 5.0, source = "',
            "call_setup_us",
        ),
    ],
)
def test_bad_profile_file_names_the_field(tmp_path: Path, old: str, new: str, field: str) -> None:
    f = _variant(tmp_path, old, new)
    if old == new:  # control: the unmodified file loads
        assert load_profile_file(f).name == "epyc-zen3-2s"
        return
    with pytest.raises(ProfileError) as exc:
        load_profile_file(f)
    assert field in str(exc.value) and str(f) in str(exc.value)


def test_empty_source_and_unknown_field_are_refused(tmp_path: Path) -> None:
    f = _variant(
        tmp_path, 'cpu_ghz = { value = 2.45, source = "assumed" }', 'cpu_ghz = { value = 2.45, source = " " }'
    )
    with pytest.raises(ProfileError, match="cpu_ghz"):
        load_profile_file(f)
    g = tmp_path / "g.toml"
    g.write_text((PROFILE_DIR / "epyc-zen3-2s.toml").read_text() + 'turbo = { value = 1, source = "x" }\n')
    with pytest.raises(ProfileError, match="turbo"):
        load_profile_file(g)
    h = tmp_path / "h.toml"
    h.write_text("name = [")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile_file(h)
