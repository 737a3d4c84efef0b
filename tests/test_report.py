"""The report renders from a real small sweep, and opens in a real headless Chromium with every figure loaded."""
import csv
import re
import shutil
import subprocess

import pytest

from w2slab.report import write_report
from w2slab.runner import run_experiment


@pytest.fixture(scope="module")
def report_page(tmp_path_factory, cache_dir):
    results = tmp_path_factory.mktemp("report-results")
    run_experiment(task="sst2", weak="tfidf,minilm", strong="minilm", losses="xent,logconf", seeds=2, n_examples=400,
                   cache_dir=cache_dir, results_dir=results, progress=False)
    return write_report(results_dir=results), results


def test_report_has_tables_figures_and_csvs(report_page):
    page, results = report_page
    text = page.read_text()
    for table in ("summaries", "median_pgr", "method_comparison", "imitation"):
        assert f'id="table-{table}"' in text
        with open(page.parent / f"{table}.csv") as f:
            assert next(csv.reader(f))  # a header row
    # 2 figures for the task, PGR bars, one method scatter, learning curves
    assert len(re.findall(r'<img class="figure"', text)) == 5
    with open(page.parent / "summaries.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["loss"] for r in rows} == {"xent", "logconf"} and len(rows) == 4
    assert any(r["strong_to_strong"] == "True" for r in rows)
    assert all(r["pgr"] == "undefined" or float(r["pgr_ci_low"]) <= float(r["pgr"]) <= float(r["pgr_ci_high"])
               for r in rows)


def test_report_replaces_an_older_report_atomically(report_page):
    page, results = report_page
    (page.parent / "stale.txt").write_text("old")
    again = write_report(results_dir=results)
    assert again == page and not (page.parent / "stale.txt").exists()
    assert not list(page.parent.parent.glob(".tmp-report-*"))


def test_report_without_results_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="run `w2slab run` first"):
        write_report(results_dir=tmp_path)


def test_report_opens_in_headless_chromium_with_every_figure_loaded(report_page, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is missing: `make test` installs it (Debian package chromium)"
    page, _ = report_page
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120).stdout
    check = re.search(r'id="figure-check" data-loaded="(\d+)" data-total="(\d+)"', dom)
    assert check, "the page's figure check did not run"
    loaded, total = map(int, check.groups())
    assert total == 5 and loaded == total
    for table in ("summaries", "median_pgr", "method_comparison", "imitation"):
        assert f'id="table-{table}"' in dom
