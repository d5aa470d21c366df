"""The paper's claims as paired differences over seeds, with 95 % intervals and verdicts.

A claim is the per-seed difference of two arms' final student AP (``better - worse``);
runs with the same seed are paired (same initial weights, batches and shared random
draws), so the seed-to-seed spread that both arms share cancels. The verdict is
``holds`` when the 95 % t-interval of the mean difference lies above 0, ``refuted``
when it lies below, and ``unresolved at n`` otherwise. Used by ``ssl_synthetic.py``
(the record, ``--table``), the READMEs (checked against the record by the tests) and
the docs' landing page (drawn from the record at build time). Standard library only.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CLAIMS",
    "REGIMES",
    "Claim",
    "claim_rows",
    "claims",
    "claims_rst",
    "claims_table",
    "paired_by_seed",
    "paired_claim",
    "t_quantile_975",
]


@dataclass(frozen=True)
class Claim:
    """A claim of the paper as the per-seed AP difference ``better - worse``."""

    what: str
    better: str
    worse: str


CLAIMS = {
    "C0": Claim("PoseCons helps", "consistency", "supervised_few"),
    "C1a": Claim("mixing helps, mean teacher", "posemum_ema", "consistency"),
    "C1b": Claim("mixing helps, EMAN teacher", "posemum", "consistency_eman"),
    "C2": Claim("feature-level mixing adds to input mixing", "posemum", "posemum_input"),
    "C3": Claim("EMAN helps Pose-MUM", "posemum", "posemum_ema"),
    "headline": Claim("Pose-MUM beats PoseCons", "posemum", "consistency"),
    "D1": Claim("PoseDual beats PoseCons", "dual", "consistency"),
    "D2": Claim("mixing helps dual networks", "posemum_dual", "dual"),
}
REGIMES = ("scratch", "pretrained")


#: Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom.
T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_quantile_975(df: int) -> float:
    """The 97.5 % quantile of Student's t with ``df`` degrees of freedom (table to 30,
    the Cornish-Fisher expansion beyond, within 1e-3).

    Example:
        >>> t_quantile_975(4), round(t_quantile_975(1000), 3)
        (2.776, 1.962)
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(T975):
        return T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def paired_claim(diffs: Sequence[float]) -> dict[str, Any]:
    """Mean of the per-seed differences, its 95 % t-interval and the verdict.

    Args:
        diffs: one ``better - worse`` AP difference per seed.

    Returns:
        ``{"diff_mean", "ci95": [lo, hi], "n", "verdict", "diffs"}``; the interval is
        ``None`` below two seeds.

    Example:
        >>> paired_claim([0.02, 0.025, 0.03])["verdict"]
        'holds'
        >>> paired_claim([0.01, -0.02, 0.03])["verdict"]
        'unresolved at 3'
    """
    n = len(diffs)
    mean = statistics.fmean(diffs) if diffs else math.nan
    interval = None
    verdict = f"unresolved at {n}"
    if n >= 2:
        half = t_quantile_975(n - 1) * statistics.stdev(diffs) / math.sqrt(n)
        interval = [mean - half, mean + half]
        if interval[0] > 0:
            verdict = "holds"
        elif interval[1] < 0:
            verdict = "refuted"
    return {"diff_mean": mean, "ci95": interval, "n": n, "verdict": verdict, "diffs": list(diffs)}


def paired_by_seed(
    scores: dict[tuple[str, str, int], float],
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per regime and claim, :func:`paired_claim` of the score differences ``better -
    worse`` over the seeds where both arms have a score.

    Args:
        scores: ``{(regime, arm, seed): score}``.

    Example:
        >>> scores = {("scratch", "posemum", 0): 0.3, ("scratch", "consistency", 0): 0.2}
        >>> entry = paired_by_seed(scores)["scratch"]["headline"]
        >>> entry["difference"], entry["seeds"], round(entry["diff_mean"], 3)
        ('posemum - consistency', [0], 0.1)
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for regime in REGIMES:
        for name, claim in CLAIMS.items():
            seeds = sorted(
                s for (g, a, s) in scores if g == regime and a == claim.better
                if (regime, claim.worse, s) in scores
            )  # fmt: skip
            if not seeds:
                continue
            better, worse = claim.better, claim.worse
            diffs = [scores[regime, better, s] - scores[regime, worse, s] for s in seeds]
            entry = {"what": claim.what, "difference": f"{claim.better} - {claim.worse}"}
            out.setdefault(regime, {})[name] = {**entry, **paired_claim(diffs), "seeds": seeds}
    return out


def claims(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per regime and claim, :func:`paired_claim` of the final student AP over the seeds
    where both arms ran.

    Raises:
        ValueError: when two runs share a regime, arm and seed (which one counts would be
            a guess).
    """
    scores: dict[tuple[str, str, int], float] = {}
    for run in runs:
        key = (run["regime"], run["arm"], run["seed"])
        if key in scores:
            raise ValueError(f"two runs of regime {key[0]!r}, arm {key[1]!r}, seed {key[2]}")
        scores[key] = run["metrics"]["student"]["AP"]
    return paired_by_seed(scores)


def claim_rows(record: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The claims table of a record as a header and rows of plain-text cells: per claim
    and regime, the mean paired AP difference, its 95 % interval, the seeds and the
    verdict."""
    header = ["claim", "difference", *REGIMES]
    rows = []
    for name, claim in CLAIMS.items():
        cells = [f"{name}: {claim.what}", f"{claim.better} - {claim.worse}"]
        for regime in REGIMES:
            entry = record["claims"].get(regime, {}).get(name)
            if entry is None:
                cells.append("not run yet")
                continue
            ci = entry["ci95"]
            interval = f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ""
            cells.append(f"{entry['diff_mean']:+.3f}{interval}, n={entry['n']}: {entry['verdict']}")
        rows.append(cells)
    return header, rows


def claims_table(record: dict[str, Any]) -> str:
    """:func:`claim_rows` as a markdown table (the READMEs)."""
    header, rows = claim_rows(record)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def claims_rst(record: dict[str, Any]) -> str:
    """:func:`claim_rows` as a reStructuredText list table (the docs)."""
    header, rows = claim_rows(record)
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    return "\n".join(lines) + "\n"
