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
        ('flush_mechanism = { value = "x86-ipi"', 'flush_mechanism = { value = "smoke"', "flush_mechanism"),
        ('default_kernel = { value = "6.6"', 'default_kernel = { value = "6.99"', "default_kernel"),
        ('default_kernel = { value = "6.6"', 'default_kernel = { value = "6.06"', "default_kernel"),
        ("invlpgb = { value = true", 'invlpgb = { value = "yes"', "invlpgb"),
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


def test_text_fields_have_sources_and_flush_mechanisms_are_named() -> None:
    for name in SHIPPED:
        p = get_profile(name)
        assert set(p.text_sources) == {"flush_mechanism", "default_kernel", "invlpgb"}
        assert all(s.strip() for s in p.text_sources.values())
        assert p.flush_mechanism == ("arm64-tlbi" if p.arch == "aarch64" else "x86-ipi")
    assert get_profile("epyc-zen3-2s").invlpgb  # AMD Zen 3: INVLPGB
    assert not get_profile("xeon-8260l-2s").invlpgb


def test_arm64_profiles_cite_arm64_sources_and_the_batch_limit_follows_the_page_size() -> None:
    for name in ("kunpeng920-2s", "grace-2s"):
        p = get_profile(name)
        for key in ("page_kb", "max_folio_kb", "single_flush_ceiling_pages", "local_page_flush_ns"):
            assert "x86" not in p.sources[key], (name, key, p.sources[key])
        # arm64's single-flush threshold is MAX_DVM_OPS = PTRS_PER_PTE pages
        assert p.values["single_flush_ceiling_pages"] == p.page_kb * 1024 // 8
        assert "MAX_DVM_OPS" in p.sources["single_flush_ceiling_pages"]
    assert "FEAT_TLBIRANGE" in get_profile("grace-2s").sources["single_flush_ceiling_pages"]
    for name in SHIPPED:
        p = get_profile(name)
        # NR_MAX_BATCHED_MIGRATION = HPAGE_PMD_NR: 512 with 4 KiB pages, 8192 with 64 KiB pages
        assert p.default_batch_limit_pages == p.page_kb * 1024 // 8
        assert "HPAGE_PMD_NR" in p.sources["default_batch_limit_pages"]


def test_older_profile_files_without_the_new_fields_still_load(tmp_path: Path) -> None:
    text = (PROFILE_DIR / "xeon-8260l-2s.toml").read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith(("invlpgb", "default_kernel", "broadcast_"))]
    old = "\n".join(lines).replace(
        lines[[i for i, ln in enumerate(lines) if ln.startswith("flush_mechanism")][0]],
        'flush_mechanism = "ipi"',
    )
    f = tmp_path / "old.toml"
    f.write_text(old + "\n")
    p = load_profile_file(f)
    assert (p.flush_mechanism, p.default_kernel, p.invlpgb) == ("x86-ipi", "6.6", False)
    assert "not given" in p.text_sources["default_kernel"] or "assumed" in p.text_sources["default_kernel"]


def test_the_catalogue_is_read_only() -> None:
    from models import profiles

    with pytest.raises(TypeError):
        profiles.catalogue()["x"] = get_profile("grace-2s")  # type: ignore[index]
    assert not hasattr(profiles, "register_profile")
