"""Edits of a spec *document* (the parsed TOML, before :func:`sweep.spec.spec_from_dict` validates
it): what a front end changes in a shipped spec, such as the profiles it sweeps."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any


def with_profiles(doc: Mapping[str, Any], profiles: Sequence[str]) -> dict[str, Any]:
    """A spec document (parsed TOML) restricted to ``profiles`` (a new dict; ``doc`` is unchanged).

    Without ``[[parts]]`` (or with ``profile`` among the common axes or fixed values) the profile
    axis becomes ``profiles``. With parts, each part keeps only the listed profiles (a part left
    without any is dropped); profiles that no part names (a measured ``local`` profile, say) get one
    more part crossing the union of the parts' values, whose infeasible combinations are then kept
    as infeasible points with their reasons, like any other.
    """
    out = copy.deepcopy(dict(doc))
    wanted = list(dict.fromkeys(profiles))
    parts = out.get("parts")
    axes, fixed = out.setdefault("axes", {}), out.get("fixed", {})
    if not isinstance(parts, list) or "profile" in axes or "profile" in fixed:
        if isinstance(fixed, dict):
            fixed.pop("profile", None)
        axes["profile"] = wanted
        return out
    kept: list[Any] = []
    covered: set[str] = set()
    union: dict[str, list[Any]] = {}
    for part in parts:
        if not isinstance(part, dict):
            kept.append(part)  # left for the parser to report
            continue
        p_axes, p_fixed = part.setdefault("axes", {}), part.get("fixed", {})
        for section in (p_axes, p_fixed):
            for key, value in section.items():
                if key != "profile":
                    values = value if isinstance(value, list) else [value]
                    union.setdefault(key, [])
                    union[key] += [v for v in values if v not in union[key]]
        named = p_axes.get("profile", p_fixed.get("profile"))
        if named is None:
            p_axes["profile"] = wanted
            covered |= set(wanted)
        else:
            names = [n for n in (named if isinstance(named, list) else [named]) if n in wanted]
            if not names:
                continue
            p_fixed.pop("profile", None)
            p_axes["profile"] = names
            covered |= set(names)
        kept.append(part)
    rest = [p for p in wanted if p not in covered]
    if rest:
        kept.append({"axes": {"profile": rest, **union}})
    out["parts"] = kept
    return out
