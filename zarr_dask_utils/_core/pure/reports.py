"""Typed results: findings and the report base class every operation returns.

A report is a frozen dataclass.  It renders itself as text (``str(report)``), as HTML in a
notebook (``_repr_html_``) and as JSON-safe data (``to_dict()``), and it never contains
credentials: locations are redacted before they reach a report.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "SEVERITIES",
    "Finding",
    "Report",
    "Severity",
    "json_safe",
    "keys_finding",
    "sort_findings",
]

Severity = Literal["error", "warning", "info"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem (or observation) about one place in a store.

    Parameters
    ----------
    severity
        ``"error"`` (data is unreadable, invisible or wrong), ``"warning"`` (works, but
        fragile or slow) or ``"info"`` (worth knowing, nothing to fix).
    code
        Stable identifier, e.g. ``"consolidated-stale"``; scripts branch on it.
    location
        Store-relative key or node path (``""`` is the root), e.g. ``"t2m/c/0/4"``.
    message
        What was expected and what was found.
    fix
        The concrete next step, or ``None`` when there is nothing to do.
    """

    severity: Severity
    code: str
    location: str
    message: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the finding as a JSON-safe dict."""
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        where = self.location or "/"
        text = f"[{self.severity}] {self.code} at {where}: {self.message}"
        if self.fix:
            text += f"\n    fix: {self.fix}"
        return text


def sort_findings(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """Order findings by severity (errors first), then location, then code."""
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    return tuple(sorted(findings, key=lambda f: (rank[f.severity], f.location, f.code)))


def json_safe(value: Any) -> Any:
    """Convert dataclasses, tuples, sets and numpy scalars into plain JSON types."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        if callable(to_dict):
            return to_dict()
        return {f.name: json_safe(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [json_safe(v) for v in items]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return "NaN"
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """Base of every result: where it ran, what it found, and how to render it.

    Parameters
    ----------
    location
        The store the report is about, credentials removed.
    engine
        Which engine ran the work and why (e.g. ``"distributed: 2 workers at tcp://…"``).
    findings
        Problems found, errors first.
    """

    location: str
    engine: str = ""
    findings: tuple[Finding, ...] = field(default=())

    title = "Report"

    @property
    def ok(self) -> bool:
        """``True`` when no finding is an error or a warning."""
        return not any(f.severity in ("error", "warning") for f in self.findings)

    def counts(self) -> dict[str, int]:
        """Number of findings per severity."""
        return {s: sum(f.severity == s for f in self.findings) for s in SEVERITIES}

    def findings_with(self, code: str) -> tuple[Finding, ...]:
        """Return the findings whose ``code`` equals *code*."""
        return tuple(f for f in self.findings if f.code == code)

    # --- rendering hooks for subclasses -------------------------------------------------
    def summary_lines(self) -> Sequence[str]:
        """Lines printed between the title and the findings (override in subclasses)."""
        return ()

    def to_dict(self) -> dict[str, Any]:
        """Return the whole report as JSON-safe data (``ok`` and ``counts`` included)."""
        data: dict[str, Any] = {"report": type(self).__name__, "ok": self.ok}
        for f in dataclasses.fields(self):
            data[f.name] = json_safe(getattr(self, f.name))
        data["counts"] = self.counts()
        return data

    def __str__(self) -> str:
        counts = self.counts()
        status = "OK" if self.ok else "PROBLEMS FOUND"
        lines = [f"{self.title} for {self.location}: {status}"]
        if self.engine:
            lines.append(f"  engine: {self.engine}")
        lines.extend(f"  {line}" for line in self.summary_lines())
        if self.findings:
            lines.append(
                f"  findings: {counts['error']} error(s), {counts['warning']} warning(s), "
                f"{counts['info']} info"
            )
            lines.extend("  " + str(f).replace("\n", "\n  ") for f in self.findings)
        else:
            lines.append("  findings: none")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        esc = html.escape
        colour = {"error": "#b00020", "warning": "#b26a00", "info": "#555"}
        status = "OK" if self.ok else "problems found"
        parts = [
            f"<div><strong>{esc(self.title)}</strong> for <code>{esc(self.location)}</code>: "
            f"<strong>{status}</strong>"
        ]
        if self.engine:
            parts.append(f"<br><small>engine: {esc(self.engine)}</small>")
        if self.summary_lines():
            items = "".join(f"<li>{esc(line)}</li>" for line in self.summary_lines())
            parts.append(f"<ul>{items}</ul>")
        if self.findings:
            rows = "".join(
                f"<tr><td style='color:{colour[f.severity]}'>{f.severity}</td>"
                f"<td><code>{esc(f.code)}</code></td><td><code>{esc(f.location or '/')}</code></td>"
                f"<td>{esc(f.message)}</td><td>{esc(f.fix or '')}</td></tr>"
                for f in self.findings
            )
            parts.append(
                "<table><thead><tr><th>severity</th><th>code</th><th>location</th>"
                f"<th>message</th><th>fix</th></tr></thead><tbody>{rows}</tbody></table>"
            )
        parts.append("</div>")
        return "".join(parts)


KEYS_SHOWN = 5  # keys named in a summarised finding


def keys_finding(
    severity: Severity,
    code: str,
    location: str,
    keys: Sequence[str],
    count: int,
    message: str,
    fix: str | None = None,
) -> Finding:
    """One finding for *count* objects of one kind (the first few *keys* named), not one each.

    A single object keeps its own key as the location; several are reported at *location*.

    Examples
    --------
    >>> f = keys_finding("info", "unexpected-key", "", ["a.txt", "b.txt"], 2, "zarr ignores them")
    >>> f.message
    "2 objects ('a.txt', 'b.txt'): zarr ignores them"
    """
    if count == 1 and keys:
        return Finding(severity, code, keys[0], message, fix)
    shown = ", ".join(repr(k) for k in keys[:KEYS_SHOWN])
    more = count - min(len(keys), KEYS_SHOWN)
    listed = f"{shown} and {more} more" if more > 0 else shown
    return Finding(severity, code, location, f"{count} objects ({listed}): {message}", fix)
