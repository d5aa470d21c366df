"""The claims statistics of the semi-supervised benchmark (``benchmarks/claims.py``), and
the READMEs' claims tables against the committed record."""

from __future__ import annotations

import json
import math
import re
import statistics
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.paths import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

from claims import CLAIMS, claims, claims_rst, claims_table, paired_claim, t_quantile_975

RECORD = ROOT / "benchmarks" / "records" / "ssl_claims.json"


def test_t_quantiles_are_students() -> None:
    # the table's ends and the expansion beyond it agree with Student's t to 1e-3
    assert t_quantile_975(1) == 12.706 and t_quantile_975(30) == 2.042
    assert t_quantile_975(40) == pytest.approx(2.021, abs=1e-3)
    assert t_quantile_975(120) == pytest.approx(1.980, abs=1e-3)
    with pytest.raises(ValueError, match="got 0"):
        t_quantile_975(0)


def test_paired_claim_interval_by_hand() -> None:
    entry = paired_claim([0.02, 0.025, 0.03])
    half = 4.303 * 0.005 / math.sqrt(3)
    assert entry["diff_mean"] == pytest.approx(0.025)
    assert entry["ci95"] == pytest.approx([0.025 - half, 0.025 + half])
    assert entry["verdict"] == "holds" and entry["n"] == 3
    assert paired_claim([-0.02, -0.025, -0.03])["verdict"] == "refuted"
    assert paired_claim([0.01, 0.02, 0.03])["verdict"] == "unresolved at 3"  # 0 inside
    assert paired_claim([0.01, -0.02, 0.03])["verdict"] == "unresolved at 3"
    one = paired_claim([0.05])
    assert one["ci95"] is None and one["verdict"] == "unresolved at 1"


@given(
    st.lists(st.floats(-0.5, 0.5), min_size=2, max_size=12),
    st.floats(-0.5, 0.5),
)
def test_paired_claim_is_shift_equivariant(diffs: list[float], shift: float) -> None:
    """Adding a constant to every difference moves the mean and the interval by it."""
    a, b = paired_claim(diffs), paired_claim([d + shift for d in diffs])
    assert b["diff_mean"] == pytest.approx(a["diff_mean"] + shift, abs=1e-9)
    assert b["ci95"] == pytest.approx([v + shift for v in a["ci95"]], abs=1e-9)
    width = a["ci95"][1] - a["ci95"][0]
    sd = statistics.stdev(diffs)
    assert width == pytest.approx(2 * t_quantile_975(len(diffs) - 1) * sd / math.sqrt(len(diffs)))


def _run(regime: str, arm: str, seed: int, ap: float) -> dict[str, object]:
    return {"regime": regime, "arm": arm, "seed": seed, "metrics": {"student": {"AP": ap}}}


def test_claims_pair_by_seed_and_skip_unpaired_seeds() -> None:
    runs = [
        _run("scratch", "consistency", 0, 0.30),
        _run("scratch", "supervised_few", 0, 0.20),
        _run("scratch", "consistency", 1, 0.10),
        _run("scratch", "supervised_few", 1, 0.05),
        _run("scratch", "consistency", 2, 0.90),  # no supervised_few seed 2: not paired
    ]
    c0 = claims(runs)["scratch"]["C0"]
    assert c0["seeds"] == [0, 1] and c0["diffs"] == pytest.approx([0.10, 0.05])
    assert set(claims(runs)["scratch"]) == {"C0"}  # no other claim has both arms


def _readme_tables() -> list[tuple[Path, str]]:
    """The claims table of every README that shows one, between its markers."""
    found = []
    for path in (ROOT / "README.md", ROOT / "examples" / "README.md"):
        match = re.search(
            r"<!-- claims table: .*? -->\n(.*?)\n<!-- end of claims table -->",
            path.read_text(),
            flags=re.DOTALL,
        )
        if match:
            found.append((path, match.group(1)))
    return found


def test_readmes_show_the_records_claims_table() -> None:
    """No README keeps a claims number that the committed record does not give."""
    tables = _readme_tables()
    assert {p.name for p, _ in tables} == {"README.md"} and len(tables) == 2
    record = json.loads(RECORD.read_text())
    assert claims(record["runs"]) == record["claims"]
    for path, table in tables:
        assert table == claims_table(record), (
            f"{path}: run python benchmarks/ssl_synthetic.py --table"
        )


def test_claims_rst_lists_every_claim() -> None:
    record = json.loads(RECORD.read_text())
    rst = claims_rst(record)
    assert rst.startswith(".. list-table::")
    assert all(f"{name}: {claim.what}" in rst for name, claim in CLAIMS.items())


def test_progress_counts_the_records_runs_against_the_full_benchmark() -> None:
    import ssl_synthetic

    runs = [
        {"regime": "scratch", "arm": "consistency", "seed": 0},
        {"regime": "pretrained", "arm": "dual", "seed": 4},
        {"regime": "pretrained", "arm": "supervised_all", "seed": 2},
    ]
    assert ssl_synthetic.progress({"runs": runs}) == (
        "record: 3 runs (claims arms 2 of 66, dual arms 1 of 20)"
    )


def test_claims_refuse_two_runs_of_one_regime_arm_and_seed() -> None:
    runs = [_run("scratch", "consistency", 0, 0.30), _run("scratch", "consistency", 0, 0.31)]
    with pytest.raises(ValueError, match="two runs of regime 'scratch', arm 'consistency'"):
        claims(runs)
    # the same arm and seed in the other regime is another run
    claims([_run("scratch", "consistency", 0, 0.30), _run("pretrained", "consistency", 0, 0.3)])


def test_a_run_folder_of_another_command_is_not_read_back(tmp_path: Path) -> None:
    import ssl_synthetic

    (tmp_path / "run.json").write_text(
        json.dumps({"command": "python examples/train.py --mix-grid 4 4", "seconds": 1.0})
    )
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(SystemExit, match="holds a run of another command"):
        ssl_synthetic.train_run(tmp_path, ["--mix-grid", "2", "2"])
    assert ssl_synthetic.train_run(tmp_path, ["--mix-grid", "4", "4"]) == 1.0  # its own


def test_a_record_of_another_budget_is_not_overwritten(tmp_path: Path) -> None:
    import ssl_synthetic

    record = tmp_path / "claims.json"
    record.write_text(json.dumps({"budget": {"seeds": [0]}, "runs": []}))
    with pytest.raises(SystemExit, match="made with another budget"):
        ssl_synthetic.main(["--record", str(record), "--work", str(tmp_path / "w")])
    assert json.loads(record.read_text()) == {"budget": {"seeds": [0]}, "runs": []}


def _full_run(arm: str, seed: int, ap: float, pck: float, unsup: float | None) -> dict[str, Any]:
    """A semi-supervised run of 30 steps whose diagnostics before step 20 are off the scale
    (the mechanism quantities average the last third only)."""
    pseudo = [
        {"step": step, "pseudo_pck": 99.0 if step <= 20 else pck, "pseudo_peak": 0.5}
        for step in (10, 20, 30)
    ]
    losses = [[10, 9.0, 9.0], [20, 9.0, 9.0], [30, 0.002, unsup]]
    return {
        **_run("scratch", arm, seed, ap),
        "metrics": {"student": {"AP": ap}, "teacher": {"AP": ap + 0.01}},
        "pseudo": pseudo,
        "losses": losses,
        "seconds": 60.0,
    }


def test_mechanism_table_pairs_the_last_third_better_minus_worse() -> None:
    import ssl_synthetic

    runs = [
        _full_run("posemum", 0, 0.30, pck=0.70, unsup=0.004),
        _full_run("posemum", 1, 0.32, pck=0.72, unsup=None),  # a run that lacks one loss
        _full_run("consistency", 0, 0.28, pck=0.60, unsup=0.001),
        _full_run("consistency", 1, 0.30, pck=0.66, unsup=0.001),
    ]
    record = {"budget": {"steps": 30}, "runs": runs, "claims": claims(runs)}
    record["summary"] = ssl_synthetic.summarize(runs)
    (row,) = [
        line for line in ssl_synthetic.mechanism_table(record).splitlines() if "headline" in line
    ]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:3] == ["scratch", "headline", "+0.020 [+0.020, +0.020]"]  # teacher AP
    assert cells[5] == "+3.000, n=1"  # unsup loss in 1e-3, the seed that has it
    assert cells[6].startswith("+0.080 [")  # target PCK: (0.10 + 0.06) / 2
    assert "99" not in ssl_synthetic.diagnostics_table(record)
    summary = ssl_synthetic.summarize(runs[:1] + runs[2:])["scratch"]
    assert summary["posemum"]["AP_std"] is None and summary["consistency"]["n"] == 2
    assert "| scratch | posemum | 1 | 0.300 +- - |" in ssl_synthetic.arms_table(
        {"summary": {"scratch": summary}}
    )
