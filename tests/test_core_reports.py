"""Reports and findings: rendering as text, HTML and JSON, and never a credential."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import fsspec
import numpy as np
import pytest

from zarr_dask_utils import Finding, InvalidOptionError, Report, walk_hierarchy
from zarr_dask_utils._core.pure.reports import json_safe, sort_findings
from zarr_dask_utils.testing.builders import build_sample_hierarchy

ERROR = Finding("error", "json-invalid", "t2m/zarr.json", "not valid JSON", fix="restore it")
WARNING = Finding("warning", "consolidated-stale", "late", "missing from consolidated metadata")
INFO = Finding("info", "note", "", "just saying")


@dataclass(frozen=True, slots=True, kw_only=True)
class CountReport(Report):
    """A subclass the way features write them."""

    arrays: int = 0
    title: ClassVar[str] = "Count"

    def summary_lines(self):
        return [f"{self.arrays} array(s)"]


def test_finding_text_and_dict():
    assert str(ERROR) == (
        "[error] json-invalid at t2m/zarr.json: not valid JSON\n    fix: restore it"
    )
    assert str(INFO) == "[info] note at /: just saying"
    assert ERROR.to_dict() == {
        "severity": "error",
        "code": "json-invalid",
        "location": "t2m/zarr.json",
        "message": "not valid JSON",
        "fix": "restore it",
    }


def test_sort_findings_errors_first():
    assert sort_findings([INFO, WARNING, ERROR]) == (ERROR, WARNING, INFO)
    b = Finding("error", "a", "b", "m")
    a = Finding("error", "z", "a", "m")
    assert sort_findings([b, a]) == (a, b)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param((1, (2, 3)), [1, [2, 3]], id="tuples"),
        pytest.param({3, 1, 2}, [1, 2, 3], id="set"),
        pytest.param(np.float32(1.5), 1.5, id="numpy-scalar"),
        pytest.param(np.int64(7), 7, id="numpy-int"),
        pytest.param(float("nan"), "NaN", id="nan"),
        pytest.param({1: "a"}, {"1": "a"}, id="int-keys"),
        pytest.param(ERROR, ERROR.to_dict(), id="dataclass-with-to_dict"),
    ],
)
def test_json_safe(value, expected):
    assert json_safe(value) == expected


def test_json_safe_plain_dataclass():
    @dataclass
    class Plain:
        a: tuple[int, ...]

    assert json_safe(Plain((1, 2))) == {"a": [1, 2]}


def test_report_ok_counts_and_lookup():
    clean = CountReport(location="/x", findings=(INFO,))
    assert clean.ok
    bad = CountReport(location="/x", findings=(ERROR, WARNING, INFO), arrays=3)
    assert not bad.ok
    assert bad.counts() == {"error": 1, "warning": 1, "info": 1}
    assert bad.findings_with("consolidated-stale") == (WARNING,)
    assert not CountReport(location="/x", findings=(WARNING,)).ok


def test_report_to_dict_is_json():
    report = CountReport(location="/x", engine="threads", findings=(ERROR,), arrays=3)
    data = json.loads(json.dumps(report.to_dict()))
    assert data == {
        "report": "CountReport",
        "ok": False,
        "location": "/x",
        "engine": "threads",
        "findings": [ERROR.to_dict()],
        "arrays": 3,
        "counts": {"error": 1, "warning": 0, "info": 0},
    }


def test_report_text():
    report = CountReport(location="/x", engine="threads", findings=(ERROR, INFO), arrays=2)
    assert str(report).splitlines() == [
        "Count for /x: PROBLEMS FOUND",
        "  engine: threads",
        "  2 array(s)",
        "  findings: 1 error(s), 0 warning(s), 1 info",
        "  [error] json-invalid at t2m/zarr.json: not valid JSON",
        "      fix: restore it",
        "  [info] note at /: just saying",
    ]
    assert str(Report(location="/y")).splitlines() == ["Report for /y: OK", "  findings: none"]


def test_report_html_escapes():
    nasty = Finding("warning", "x<y", "a&b", "<script>alert(1)</script>")
    html = CountReport(location="<loc>", engine="e&e", findings=(nasty,))._repr_html_()
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "&lt;loc&gt;" in html
    assert "e&amp;e" in html
    assert "<table>" in html
    assert "color:#b26a00" in html
    assert "<strong>problems found</strong>" in html
    plain = Report(location="/y")._repr_html_()
    assert "<table>" not in plain
    assert "<strong>OK</strong>" in plain


# --- credentials never reach a report ----------------------------------------------------------


def _assert_clean(report, *secrets):
    rendered = [json.dumps(report.to_dict()), str(report), report._repr_html_()]
    for text in rendered:
        for secret in secrets:
            assert secret not in text


@pytest.mark.s3
@pytest.mark.cluster
def test_no_credentials_from_storage_options(s3_bucket, s3_endpoint, client):
    # moto without authentication accepts any key: use ones that cannot appear by accident
    options = {"key": "AKIDSENTINEL0001", "secret": "s3cr3t-SENTINEL", "endpoint_url": s3_endpoint}
    url = f"s3://{s3_bucket}/store.zarr"
    build_sample_hierarchy(url, storage_options=options)
    report = walk_hierarchy(url, storage_options=options, client=client, progress=False)
    assert len(report.arrays) == 4
    assert report.location == url
    _assert_clean(report, "AKIDSENTINEL0001", "s3cr3t-SENTINEL")


def test_no_credentials_from_the_url(tmp_path):
    # A URL carrying user:password@ is refused before anything is opened (issue 10): the
    # refusal names the URL with the credentials masked, so neither part reaches any text.
    url = f"memory://alice:hunter2@zdu-test/{tmp_path.name}/store.zarr"
    with pytest.raises(InvalidOptionError) as info:
        walk_hierarchy(url, progress=False)
    message = str(info.value)
    assert f"memory://***@zdu-test/{tmp_path.name}/store.zarr" in message
    assert "hunter2" not in message
    assert "alice" not in message
    assert not fsspec.filesystem("memory").exists(f"/alice:hunter2@zdu-test/{tmp_path.name}")
