# scripts/autobahn-cases.py: the Python side of scripts/autobahn, run by the
# Python 2.7 that scripts/autobahn-install unpacked (it imports wstest's own
# case list, so a selection means exactly what wstest will run).
#
#   python autobahn-cases.py spec OUTDIR URL CASES EXCLUDE
#       writes OUTDIR/fuzzingclient.json (the wstest spec) and
#       OUTDIR/selected.json (the case ids the selection names).
#   python autobahn-cases.py summary OUTDIR SECONDS
#       reads OUTDIR/index.json; prints one line per outcome class, the
#       FAILED cases with why, and last "N passed, M failed"; exits 1 if any
#       case FAILED.
#
# Passed means OK, NON-STRICT or INFORMATIONAL. A case counts as FAILED when
# its behavior or its close behavior is FAILED, or when it was selected and
# has no result (the server died or refused it). UNIMPLEMENTED (an extension
# the server declines) is listed and counts as neither.
import json
import os
import re
import sys

AGENT = "switchboard"
ORDER = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
PASSED = ("OK", "NON-STRICT", "INFORMATIONAL")


def split(selection):
    return [c.strip() for c in selection.split(",") if c.strip()]


def spec(outdir, url, cases, exclude):
    from autobahntestsuite.case import (CaseSetname, CaseBasename, Cases,
                                        CaseCategories, CaseSubCategories)
    from autobahntestsuite.caseset import CaseSet
    chosen = {"cases": split(cases) or ["*"], "exclude-cases": split(exclude)}
    case_set = CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories,
                       CaseSubCategories)
    selected = case_set.parseSpecCases(chosen)
    # wstest waits forever when the selection is empty.
    if not selected:
        sys.exit("autobahn: no case matches %r minus %r" % (cases, exclude))
    with open(os.path.join(outdir, "selected.json"), "w") as f:
        json.dump(selected, f)
    with open(os.path.join(outdir, "fuzzingclient.json"), "w") as f:
        json.dump({"outdir": outdir,
                   # A dropped TCP connection is judged by the close
                   # behavior, not failed outright.
                   "options": {"failByDrop": False},
                   "servers": [{"agent": AGENT, "url": url}],
                   "cases": chosen["cases"],
                   "exclude-cases": chosen["exclude-cases"],
                   "exclude-agent-cases": {}}, f, indent=2)


def case_key(case):
    return tuple(int(p) if p.isdigit() else p for p in case.split("."))


def plain(html, limit):
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]*>", " ", html or "")).strip()
    return text if len(text) <= limit else text[:limit - 3] + "..."


def why_failed(outdir, result):
    try:
        with open(os.path.join(outdir, result.get("reportfile", ""))) as f:
            report = json.load(f)
    except (IOError, ValueError):
        return "", ""
    if result.get("behavior") == "FAILED":
        reason = report.get("result")
    else:
        reason = report.get("resultClose")
    return plain(report.get("description"), 160), plain(reason, 160)


def summary(outdir, seconds):
    try:
        with open(os.path.join(outdir, "index.json")) as f:
            results = json.load(f).get(AGENT, {})
    except (IOError, ValueError) as e:
        results = {}
        sys.stderr.write("autobahn: no results in %s/index.json (%s)\n"
                         % (outdir, e))
    try:
        with open(os.path.join(outdir, "selected.json")) as f:
            selected = json.load(f)
    except (IOError, ValueError) as e:
        sys.stderr.write("autobahn: no selection in %s (%s); run spec first\n"
                         % (outdir, e))
        return 2

    counts = dict((outcome, 0) for outcome in ORDER)
    failed = []
    for case in sorted(set(results) | set(selected), key=case_key):
        result = results.get(case)
        if result is None:
            counts["FAILED"] += 1
            failed.append((case, "no result (did the server die?)", ""))
            continue
        behavior = result.get("behavior")
        close = result.get("behaviorClose")
        outcome = "FAILED" if "FAILED" in (behavior, close) else behavior
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome == "FAILED":
            description, reason = why_failed(outdir, result)
            failed.append((case, "behavior %s, close %s: %s"
                           % (behavior, close, description), reason))

    print("autobahn: %d cases in %s s (report: %s)"
          % (sum(counts.values()), seconds, os.path.join(outdir, "index.html")))
    for outcome in ORDER + sorted(set(counts) - set(ORDER)):
        print("autobahn: %-14s %4d" % (outcome, counts[outcome]))
    for case, what, reason in failed:
        print("autobahn: FAILED %s %s" % (case, what))
        if reason:
            print("autobahn:   %s" % reason)
    passed = sum(counts[outcome] for outcome in PASSED)
    print("%d passed, %d failed" % (passed, counts["FAILED"]))
    return 1 if counts["FAILED"] else 0


def main(argv):
    if len(argv) == 6 and argv[1] == "spec":
        spec(*argv[2:])
        return 0
    if len(argv) == 4 and argv[1] == "summary":
        return summary(*argv[2:])
    sys.stderr.write("usage: autobahn-cases.py spec OUTDIR URL CASES EXCLUDE"
                     " | summary OUTDIR SECONDS\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
