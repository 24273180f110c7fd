"""Dask's performance report in a profile: rendered by the scheduler when first asked for.

``profile_zarr_operation`` no longer builds Dask's report when the call ends (a second or
more of bokeh work); it notes where the call started and the scheduler renders the report on
the first ``dask_report_html`` / ``save_html``, while the cluster is up.  A cluster gone by
then leaves a profile without it and an HTML page that says why.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dask.array as da
import pytest
import zarr
from distributed import Client, LocalCluster

from zarr_dask_utils import profile_zarr_operation

pytestmark = pytest.mark.cluster


def _sum() -> float:
    return float(da.ones((40, 40), chunks=(10, 10)).sum().compute())


@pytest.mark.slow
def test_report_is_rendered_on_first_use_and_kept(client):
    report = profile_zarr_operation(_sum, client=client)
    assert report.result == 1600.0
    assert report.dask_report is not None
    assert report.dask_report._html is None  # not rendered when the call ended
    first = report.dask_report_html
    assert "Dask Performance Report" in first
    assert "_sum" in first  # the calling code the report shows
    assert report.dask_report_html is first  # rendered once


def test_a_cluster_gone_before_the_report_leaves_a_page_saying_why(tmp_path):
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster,
        Client(cluster, set_as_default=False) as cl,
    ):
        report = profile_zarr_operation(_sum, client=cl)
    assert report.result == 1600.0
    assert report.dask_report_html == ""
    assert "gone" in report.dask_report.why_missing
    text = report.save_html(tmp_path / "p.html").read_text(encoding="utf-8")
    assert "No Dask performance report was recorded: the cluster that ran the call" in text
    assert "Verdict: " in text  # the profile itself is all there


@pytest.mark.slow
def test_cli_on_its_embedded_cluster_writes_the_dask_report(tmp_path):
    """``zdu profile --html``, no scheduler: the report is rendered before the cluster closes."""
    store = tmp_path / "s.zarr"
    zarr.create_array(store, shape=(40,), chunks=(10,), dtype="f4")[:] = 1
    html = tmp_path / "p.html"
    zdu = Path(sys.executable).with_name("zdu")
    args = [str(zdu), "profile", "--html", str(html), "--", "check", str(store), "--deep"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    text = html.read_text(encoding="utf-8")
    assert "No Dask performance report was recorded" not in text
    assert "Verdict: " in text
