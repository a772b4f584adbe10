"""Does `ablate diagnose` name the fault planted in a baseline? A planted-fault benchmark.

For each case of bench/diagnosis_cases (one per fault family, plus healthy baselines) the script
writes the case's spec into a temporary directory and runs `ablate diagnose SPEC --store DIR`
exactly as a user would (a subprocess of --ablate, a fresh store per case so nothing is reused),
then reads `studies/{study_id}/report/summary.json` and takes its top cause (`top_cause`). It
prints per case the planted fault, the top cause's rule id and title as the report words them,
whether that names the fault, the runs trained and the wall time; then recall (the top cause
names the planted fault, over the faulty cases), false alarms (healthy baselines with any cause
claimed), median runs and median wall time, beside the targets of issue 13. A measurement, not
a gate: exit code 0 whenever every case ran, 1 when a case could not run.

`--verify` checks the cases instead: it trains each baseline beside its fix (`Case.fix`; for a
healthy baseline, twice its epochs) as a one-factor `ablate run` with 2 seeds and prints both test
accuracies, so a planted fault is shown to be real and a healthy baseline to be healthy.

    .venv/bin/python bench/diagnosis.py --out diagnosis.json
    .venv/bin/python bench/diagnosis.py --cases lr_too_high,healthy --jobs 2
    .venv/bin/python bench/diagnosis.py --quick            # two cases, 2 epochs, 2 seeds, 16 runs each
    PYTHONPATH=/other/tree .venv/bin/python bench/diagnosis.py --ablate ".venv/bin/python -m service.cli"
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: bench/ is not a package on the path

from bench.diagnosis_cases import CASES, QUICK, Case, build_spec, fixed_value, write_data  # noqa: E402

TARGETS = {"recall": 0.90, "false_alarms": 0, "median_runs": 40, "median_digits_seconds": 120.0}
CASE_TIMEOUT = 1800
QUICK_BUDGET = 16
"""--quick's runs per diagnosis: a baseline, a search and a confirmation, cut short (a smoke test)."""


def top_cause(summary: dict[str, Any]) -> dict[str, Any] | None:
    """The report's top cause: `causes[0]` where the summary ranks causes (the staged
    diagnosis), else the first finding in `findings` that is a cause (`_is_cause`)."""
    if "causes" in summary:
        causes = summary["causes"] or []
        return causes[0] if causes else None
    return next((f for f in summary.get("findings", []) if _is_cause(summary, f)), None)


def _is_cause(summary: dict[str, Any], finding: dict[str, Any]) -> bool:
    """A finding of kind "hurts" says a change from the baseline hurts: the baseline is right
    there, no cause. Except where the baseline holds what hurts and the variants that back the
    finding, which drop it, beat the baseline (today's harmful_augmentation when the baseline
    augments): that is a change that helps, a cause."""
    if finding.get("kind") != "hurts":
        return True
    deltas = {
        v.get("name"): (v.get("vs_baseline") or {}).get("delta")
        for v in summary.get("variants", [])
    }
    baseline = summary.get("baseline", "baseline")
    backing = [deltas.get(name) for name in finding.get("variants", []) if name != baseline]
    return bool(backing) and all(delta is not None and delta > 0 for delta in backing)


def names_fault(cause: dict[str, Any] | None, accepted: frozenset[str]) -> bool:
    """Whether `cause` is in `accepted`; "rule:text" also needs `text` in its title or variants."""
    if not accepted:
        return cause is None
    if cause is None:
        return False
    for entry in accepted:
        rule, _, text = entry.partition(":")
        if cause.get("rule") != rule:
            continue
        words = " ".join([cause.get("title", ""), *cause.get("variants", [])]).lower()
        if not text or text in words:
            return True
    return False


def run_case(
    case: Case, ablate: list[str], work: Path, jobs: int, quick: bool, budget: int | None = None
) -> dict[str, Any]:
    directory = work / case.name
    directory.mkdir()
    spec = build_spec(case, work / "data", *((2, 2) if quick else (None, None)))
    spec_path = directory / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    store = directory / "store"
    command = [*ablate, "diagnose", str(spec_path), "--store", str(store), "--jobs", str(jobs)]
    if budget is not None:
        command += ["--budget-runs", str(budget)]
    start = time.perf_counter()
    done = subprocess.run(
        command, cwd=directory, capture_output=True, text=True, timeout=CASE_TIMEOUT
    )
    seconds = time.perf_counter() - start
    row: dict[str, Any] = {
        "case": case.name,
        "data": case.data,
        "fault": case.fault,
        "healthy": case.healthy,
        "accepted": sorted(case.accepted),
        "seconds": round(seconds, 1),
        # Runs trained: each has a status.json in this case's own, initially empty, store.
        "runs": len(list(store.glob("runs/*/status.json"))),
        "error": None,
    }
    summaries = list(store.glob("studies/*/report/summary.json"))
    if done.returncode != 0 or len(summaries) != 1:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        row["error"] = f"exit {done.returncode}, {len(summaries)} summaries: " + " | ".join(tail)
        row.update(rule=None, title=None, causes=None, correct=False)
        return row
    summary = json.loads(summaries[0].read_text())
    cause = top_cause(summary)
    row.update(
        study_id=summary.get("study_id"),
        rule=cause.get("rule") if cause else None,
        title=cause.get("title") if cause else None,
        causes=_cause_count(summary),
        correct=names_fault(cause, case.accepted),
        # What the report said, ranked, to read a wrong answer without rerunning the case.
        findings=[
            {key: f.get(key) for key in ("rule", "kind", "title", "variants")}
            for f in summary.get("causes", summary.get("findings", []))
        ],
    )
    return row


def _cause_count(summary: dict[str, Any]) -> int:
    if "causes" in summary:
        return len(summary["causes"] or [])
    return sum(1 for f in summary.get("findings", []) if _is_cause(summary, f))


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    faulty = [r for r in rows if not r["healthy"]]
    healthy = [r for r in rows if r["healthy"]]
    digits = [r["seconds"] for r in rows if r["data"] == "digits"]
    return {
        "cases": len(rows),
        "recall": sum(r["correct"] for r in faulty) / len(faulty) if faulty else None,
        "named": f"{sum(r['correct'] for r in faulty)}/{len(faulty)}",
        "false_alarms": sum(1 for r in healthy if r["error"] or r["causes"]),
        "healthy": len(healthy),
        "errors": sum(1 for r in rows if r["error"]),
        "median_runs": statistics.median(r["runs"] for r in rows) if rows else None,
        "median_seconds": statistics.median(r["seconds"] for r in rows) if rows else None,
        "median_digits_seconds": statistics.median(digits) if digits else None,
    }


def print_table(rows: list[dict[str, Any]], total: dict[str, Any]) -> None:
    print(f"{'case':<28} {'ok':<3} {'runs':>4} {'secs':>6}  top cause (rule: title)")
    for r in rows:
        ok = "yes" if r["correct"] else "NO"
        cause = f"{r['rule']}: {r['title']}" if r["rule"] else "(no cause claimed)"
        if r["error"]:
            cause = f"ERROR {r['error']}"
        print(f"{r['case']:<28} {ok:<3} {r['runs']:>4} {r['seconds']:>6.1f}  {cause}")
        print(f"{'':<28} planted: {r['fault']}; accepts: {', '.join(r['accepted']) or 'no cause'}")
    recall = "n/a" if total["recall"] is None else f"{total['recall']:.0%}"
    print()
    print(f"recall: {recall} ({total['named']} faulty cases named)   target >= {TARGETS['recall']:.0%}")
    print(
        f"false alarms: {total['false_alarms']} of {total['healthy']} healthy baselines   "
        f"target {TARGETS['false_alarms']}"
    )
    print(f"median runs: {total['median_runs']}   target <= {TARGETS['median_runs']}")
    digits = total["median_digits_seconds"]
    print(
        f"median wall time: {total['median_seconds']:.1f} s (digits cases: "
        f"{'n/a' if digits is None else f'{digits:.1f} s'})   "
        f"target <= {TARGETS['median_digits_seconds']:.0f} s per digits case"
    )
    if total["errors"]:
        print(f"{total['errors']} cases did not run to a report (see ERROR above)")


def verify(cases: list[Case], ablate: list[str], work: Path, jobs: int) -> None:
    """Each baseline beside its fix, 2 seeds, as one `ablate run`: is the fault real?"""
    print(f"{'case':<28} {'baseline':>8} {'fixed':>8}")
    for case in cases:
        spec = build_spec(case, work / "data", seeds=2)
        # A healthy baseline is checked against twice its epochs: it should gain nothing.
        fix = fixed_value(case, work / "data") or {"training.epochs": 2 * spec["training"]["epochs"]}
        factors = [{"name": "fix", "values": [fix], "labels": ["fixed"]}]
        spec["ablation"] = {"strategy": "one_at_a_time", "seeds": 2, "factors": factors}
        path = work / f"{case.name}-verify.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        store = work / f"{case.name}-verify-store"
        done = subprocess.run(
            [*ablate, "run", str(path), "--store", str(store), "--jobs", str(jobs)],
            capture_output=True, text=True, cwd=work, timeout=CASE_TIMEOUT,
        )
        summaries = list(store.glob("studies/*/report/summary.json"))
        if done.returncode != 0 or not summaries:
            print(f"{case.name:<28} ERROR exit {done.returncode}: {done.stderr.strip()[-300:]}")
            continue
        accuracy = {
            v["name"]: v["test_accuracy"]["mean"]
            for v in json.loads(summaries[0].read_text())["variants"]
        }
        print(
            f"{case.name:<28} {_pct(accuracy.get('baseline')):>8} {_pct(accuracy.get('fixed')):>8}"
            f"{'  (2x epochs)' if case.healthy else ''}"
        )


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _commit() -> str | None:
    """The commit of the tree the ablate command runs: PYTHONPATH's first entry, else this one."""
    tree = os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] or str(ROOT)
    done = subprocess.run(
        ["git", "-C", tree, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    parser.add_argument("--quick", action="store_true", help=f"cases {', '.join(QUICK)}; 2 epochs, 2 seeds")
    parser.add_argument("--jobs", type=int, default=2, help="ablate's --jobs (default 2)")
    parser.add_argument(
        "--budget-runs", type=int,
        help=f"ablate diagnose's --budget-runs (default: its own; {QUICK_BUDGET} with --quick)",
    )
    parser.add_argument("--ablate", default=str(ROOT / ".venv" / "bin" / "ablate"), help="the ablate command")
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    parser.add_argument("--verify", action="store_true", help="train each baseline beside its fix instead")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--keep", type=Path, help="work here (specs, data, stores) and keep it")
    args = parser.parse_args(argv)

    by_name = {case.name: case for case in CASES}
    names = args.cases.split(",") if args.cases else list(QUICK if args.quick else by_name)
    unknown = [name for name in names if name not in by_name]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    cases = [by_name[name] for name in names]
    if args.list:
        for case in cases:
            print(f"{case.name:<28} {case.data:<9} {case.fault}")
        return 0
    ablate = shlex.split(args.ablate)
    if "/" in ablate[0]:  # the cases run in their own directories: a relative path would break
        ablate[0] = str(Path(ablate[0]).absolute())

    with tempfile.TemporaryDirectory(prefix="ablate-diagnosis-") as tmp:
        work = Path(tmp)
        if args.keep:
            work = args.keep.absolute()
            if work.exists() and any(work.iterdir()):
                parser.error(f"--keep {work}: not empty (each case needs a fresh store)")
        write_data(work / "data")
        if args.verify:
            verify(cases, ablate, work, args.jobs)
            return 0
        rows = []
        for case in cases:
            budget = args.budget_runs or (QUICK_BUDGET if args.quick else None)
            rows.append(run_case(case, ablate, work, args.jobs, args.quick, budget))
            row = rows[-1]
            print(f"... {case.name}: {row['rule'] or row['error'] or 'no cause'} "
                  f"({row['runs']} runs, {row['seconds']:.0f} s)", file=sys.stderr, flush=True)
    total = totals(rows)
    print_table(rows, total)
    if args.out:
        document = {
            "ablate": args.ablate,
            "commit": _commit(),
            "quick": args.quick,
            "jobs": args.jobs,
            "targets": TARGETS,
            "totals": total,
            "cases": rows,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(document, indent=2) + "\n")
    return 1 if total["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
