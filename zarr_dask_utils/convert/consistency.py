"""Do the input files agree on each variable's encoding?  Pure: attribute dicts in, a plan out.

``netcdf_to_zarr`` concatenates raw (``decode_cf=False``) values and keeps the first file's
attributes, so files that disagree on ``units`` (times), ``calendar``, ``scale_factor`` /
``add_offset`` or ``_FillValue`` / ``missing_value`` would silently decode to wrong values.
:func:`encoding_disagreements` lists every disagreement; :func:`harmonisation_plan` turns them
into exact per-file transforms (times re-encoded into one unit, packed values unpacked, fill
values mapped) or raises :class:`ConversionInputError` when no exact transform exists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np

from zarr_dask_utils.convert.errors import ConversionInputError

__all__ = [
    "ENCODING_KEYS",
    "Disagreement",
    "FileTransform",
    "HarmonisationPlan",
    "encoding_disagreements",
    "harmonisation_plan",
]

#: The attributes whose disagreement between files changes what the raw values mean.
ENCODING_KEYS = ("units", "calendar", "scale_factor", "add_offset", "_FillValue", "missing_value")

#: Time units in microseconds, largest first (the finest common unit is chosen from these).
_UNITS_US = {
    "days": 86_400_000_000,
    "hours": 3_600_000_000,
    "minutes": 60_000_000,
    "seconds": 1_000_000,
    "milliseconds": 1_000,
    "microseconds": 1,
}
_ALIASES = {
    "day": "days", "d": "days", "hour": "hours", "hr": "hours", "hrs": "hours", "h": "hours",
    "minute": "minutes", "min": "minutes", "mins": "minutes", "second": "seconds",
    "sec": "seconds", "secs": "seconds", "s": "seconds", "millisecond": "milliseconds",
    "ms": "milliseconds", "microsecond": "microseconds", "us": "microseconds",
}  # fmt: skip
_CALENDARS = {"gregorian": "standard", "": "standard"}
Attrs = Mapping[str, Mapping[str, Any]]  # variable name -> its attributes, one file


@dataclass(frozen=True, slots=True)
class Disagreement:
    """One variable whose attribute *key* differs between files: ``values[i]`` is file i's."""

    variable: str
    key: str
    values: tuple[Any, ...]

    def describe(self, files: Sequence[str]) -> str:
        """``'time' units: 'days since …' in a.nc, 'hours since …' in b.nc``."""
        shown = ", ".join(f"{_show(v)} in {f}" for v, f in zip(self.values, files, strict=True))
        return f"{self.variable!r} {self.key}: {shown}"


@dataclass(frozen=True, slots=True)
class FileTransform:
    """How one file's raw values of one variable become the target's raw values.

    ``masked`` values (the file's own fill/missing values) become ``fill``; the rest become
    ``raw * scale + offset`` in ``dtype`` (the identity when scale is 1 and offset 0).
    """

    scale: float | int = 1
    offset: float | int = 0
    dtype: str | None = None
    masked: tuple[Any, ...] = ()
    fill: Any = None

    @property
    def identity(self) -> bool:
        """True when the raw values are kept as they are."""
        return self.scale == 1 and self.offset == 0 and self.dtype is None and not self.masked


@dataclass(frozen=True, slots=True)
class HarmonisationPlan:
    """Per variable: the target's attributes and one transform per file; notes for the report."""

    attrs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    transforms: Mapping[str, tuple[FileTransform, ...]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.transforms)


def _show(value: Any) -> str:
    if value is None:
        return "absent"
    if isinstance(value, np.generic | np.ndarray):
        value = np.asarray(value).tolist()
    return repr(value)


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    x, y = np.asarray(a), np.asarray(b)
    if x.dtype.kind in "fc" and y.dtype.kind in "fc" and x.shape == y.shape:
        return bool(np.array_equal(x, y, equal_nan=True))
    return bool(x.shape == y.shape and np.all(x == y))


def encoding_disagreements(per_file: Sequence[Attrs]) -> list[Disagreement]:
    """Every (variable, encoding attribute) whose value differs between the files.

    Only variables present in every file are compared; an attribute absent in one file and
    present in another is a disagreement (``None`` stands for absent).

    Examples
    --------
    >>> a = {"time": {"units": "days since 2000-01-01"}}
    >>> b = {"time": {"units": "hours since 2001-01-01"}}
    >>> [(d.variable, d.key) for d in encoding_disagreements([a, b])]
    [('time', 'units')]
    """
    if len(per_file) < 2:
        return []
    names = [n for n in per_file[0] if all(n in attrs for attrs in per_file[1:])]
    out = []
    for name in names:
        for key in ENCODING_KEYS:
            values = tuple(attrs[name].get(key) for attrs in per_file)
            if key == "calendar":
                values = tuple(_calendar(v) if v is not None else None for v in values)
                if len({v or "standard" for v in values}) == 1:
                    continue
            if not all(_same(values[0], v) for v in values[1:]):
                out.append(Disagreement(name, key, values))
    return out


def _calendar(value: Any) -> str:
    text = str(value).strip().lower()
    return _CALENDARS.get(text, text)


def _time_units(units: str) -> tuple[int, str] | None:
    """``("days since 2000-01-01")`` → ``(86400000000, "2000-01-01")``; None if not a time."""
    if " since " not in units:
        return None
    step, epoch = units.split(" since ", 1)
    name = _ALIASES.get(step.strip().lower(), step.strip().lower())
    if name not in _UNITS_US:
        return None
    return _UNITS_US[name], epoch.strip()


def _epoch_offset_us(epoch: str, first: str, calendar: str) -> int:
    """Microseconds from *first* to *epoch* in *calendar* (``cftime`` does the calendar)."""
    import cftime

    a = cftime.num2date(0, f"days since {epoch}", calendar)
    b = cftime.num2date(0, f"days since {first}", calendar)
    delta = a - b
    return (
        int(delta.days) * 86_400_000_000 + int(delta.seconds) * 1_000_000 + int(delta.microseconds)
    )


def _refuse(name: str, files: Sequence[str], found: Sequence[Disagreement], why: str) -> NoReturn:
    differing = "; ".join(d.describe(files) for d in found)
    raise ConversionInputError(
        f"The input files disagree on how variable {name!r} is encoded ({differing}), and "
        f"{why}, so combining them would store wrong values; nothing was written. Convert "
        "these files separately, or rewrite them to one encoding first and convert those."
    )


def _plan_time(
    name: str, per_file: Sequence[Attrs], files: Sequence[str], found: list[Disagreement]
) -> tuple[dict[str, Any], tuple[FileTransform, ...], str]:
    attrs = [a[name] for a in per_file]
    calendars = {_calendar(a.get("calendar", "standard")) for a in attrs}
    if len(calendars) > 1:
        _refuse(name, files, found, "dates in different calendars cannot be converted exactly")
    (calendar,) = calendars
    parsed = [_time_units(str(a.get("units", ""))) for a in attrs]
    if any(p is None for p in parsed):
        _refuse(name, files, found, "not every file's units read as '<unit> since <date>'")
    steps = [p[0] for p in parsed if p]
    epochs = [p[1] for p in parsed if p]
    try:
        offsets = [_epoch_offset_us(e, epochs[0], calendar) for e in epochs]
    except (ValueError, TypeError) as err:
        _refuse(name, files, found, f"a reference date cannot be read ({err})")
    common = math.gcd(*steps, *offsets)
    target = steps[0] if common % steps[0] == 0 else common
    unit = next(u for u, us in _UNITS_US.items() if target % us == 0)
    unit_us = _UNITS_US[unit]
    new = dict(attrs[0])
    new["units"] = f"{unit} since {epochs[0]}"
    transforms = tuple(
        FileTransform(scale=s // unit_us, offset=o // unit_us)
        for s, o in zip(steps, offsets, strict=True)
    )
    how = (
        f"kept the first file's units {new['units']!r}"
        if unit_us == steps[0]
        else f"the first file's units do not divide the others', so the finer common unit "
        f"{new['units']!r} is used"
    )
    note = f"{name!r}: times re-encoded from each file's units ({how})"
    return new, transforms, note


def _mask_values(attrs: Mapping[str, Any]) -> list[Any]:
    out: list[Any] = []
    for key in ("_FillValue", "missing_value"):
        if attrs.get(key) is not None:
            out.extend(np.atleast_1d(np.asarray(attrs[key])).tolist())
    return out


def _plan_unpack(
    name: str, per_file: Sequence[Attrs]
) -> tuple[dict[str, Any], tuple[FileTransform, ...], str]:
    attrs = [a[name] for a in per_file]
    kinds = [np.asarray(a[k]) for a in attrs for k in ("scale_factor", "add_offset") if k in a]
    dtype = np.result_type(*kinds) if kinds else np.dtype("f8")
    dtype = dtype if dtype.kind == "f" else np.dtype("f8")
    fill = dtype.type(np.nan)
    transforms = tuple(
        FileTransform(
            scale=a.get("scale_factor", 1),
            offset=a.get("add_offset", 0),
            dtype=dtype.str,
            masked=tuple(_mask_values(a)),
            fill=fill,
        )
        for a in attrs
    )
    new = {k: v for k, v in attrs[0].items() if k not in _PACKING}
    new["_FillValue"] = fill
    note = (
        f"{name!r}: files packed with different scale_factor/add_offset, so the values are "
        f"unpacked and written as {dtype.name} (missing values as NaN)"
    )
    return new, transforms, note


def _plan_fill(
    name: str,
    per_file: Sequence[Attrs],
    files: Sequence[str],
    found: list[Disagreement],
    dtype: str | None,
) -> tuple[dict[str, Any], tuple[FileTransform, ...], str]:
    attrs = [a[name] for a in per_file]
    new = dict(attrs[0])
    target = _mask_values(attrs[0])
    if target:
        fill = target[0]
    elif dtype is not None and np.dtype(dtype).kind == "f":
        fill = np.dtype(dtype).type(np.nan)
        new["_FillValue"] = fill
    else:
        _refuse(name, files, found, "the first file declares no fill value to map the others' to")
    transforms = tuple(
        FileTransform(masked=tuple(m for m in _mask_values(a) if not _same(m, fill)), fill=fill)
        for a in attrs
    )
    note = (
        f"{name!r}: each file's fill/missing values mapped to the target's _FillValue "
        f"{_show(fill)} (a valid value equal to it in another file would read as missing)"
    )
    return new, transforms, note


#: Attributes that describe packed values: dropped when the values are unpacked.
_PACKING = ("scale_factor", "add_offset", "missing_value", "_FillValue", "valid_min",
            "valid_max", "valid_range", "actual_range")  # fmt: skip


def harmonisation_plan(
    per_file: Sequence[Attrs],
    files: Sequence[str],
    dtypes: Mapping[str, str] | None = None,
) -> HarmonisationPlan:
    """Exact per-file transforms that make the files agree, or a refusal.

    Parameters
    ----------
    per_file
        Per file (in order): variable name → its raw attributes (``decode_cf=False``).
    files
        The files' names, for the messages.
    dtypes
        Raw dtype per variable (of the first file): a float variable without a fill value
        can take NaN as one.

    Returns
    -------
    HarmonisationPlan
        Empty (false) when the files agree.

    Raises
    ------
    ConversionInputError
        A disagreement no exact transform removes: different calendars, different units
        of a variable that is not a time, unreadable time units, no fill value to map to.

    Examples
    --------
    >>> a = {"time": {"units": "days since 2000-01-01"}}
    >>> b = {"time": {"units": "days since 2000-01-03"}}
    >>> plan = harmonisation_plan([a, b], ["a.nc", "b.nc"])
    >>> [(t.scale, t.offset) for t in plan.transforms["time"]]
    [(1, 0), (1, 2)]
    """
    by_var: dict[str, list[Disagreement]] = {}
    for d in encoding_disagreements(per_file):
        by_var.setdefault(d.variable, []).append(d)
    attrs: dict[str, Mapping[str, Any]] = {}
    transforms: dict[str, tuple[FileTransform, ...]] = {}
    notes = []
    for name, found in by_var.items():
        keys = {d.key for d in found}
        first_units = str(per_file[0][name].get("units", ""))
        if keys & {"units", "calendar"}:
            if " since " not in first_units or keys - {"units", "calendar"}:
                why = (
                    "values in different units cannot be converted exactly"
                    if " since " not in first_units
                    else "a time variable may differ only in units and calendar"
                )
                _refuse(name, files, found, why)
            new, plan, note = _plan_time(name, per_file, files, found)
        elif keys & {"scale_factor", "add_offset"}:
            new, plan, note = _plan_unpack(name, per_file)
        else:
            new, plan, note = _plan_fill(name, per_file, files, found, (dtypes or {}).get(name))
        attrs[name], transforms[name] = new, plan
        notes.append(note)
    return HarmonisationPlan(attrs, transforms, tuple(notes))
