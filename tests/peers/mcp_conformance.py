"""Runs the official MCP conformance suite (`@modelcontextprotocol/conformance`) against a server URL
and prints one JSON summary on stdout.

    python3 mcp_conformance.py --node NODE --suite-js PATH/dist/index.js --url URL --out DIR \\
        [--scenario S ...] [--timeout SECONDS]

Without --scenario it runs `server --suite all` once; with it, one `server --scenario S` per name.
The suite writes DIR/server-<scenario>-<timestamp>/checks.json, a list of checks whose `status` is
SUCCESS, FAILURE, WARNING or INFO; this reads the ones written by this run and prints

    {"scenarios": {"<name>": {"passed": n, "failed": n, "warnings": n,
                              "failures": ["<check id>: <error message>", ...]}},
     "passed": N, "failed": N, "checks": {"passed": n, "failed": n, "warnings": n}}

where a scenario passes when it has no FAILURE check, and top-level passed/failed count scenarios.
A scenario that was expected (from `list`, or named with --scenario) but left no checks.json counts
as failed with the failure "<name>: no results written". The suite's own output goes to stderr.
Exit status is 0 whenever the suite ran, whatever the checks say; nonzero only when it could not run
(node or the suite missing, `list` failing, a timeout, or nothing written at all).
"""

import argparse
import json
import os
import re
import subprocess
import sys

DIR_RE = re.compile(r"^server-(?P<name>.+)-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z$")


def server_scenarios(node, suite_js):
    """The server scenario names, from the suite's `list` command."""
    out = subprocess.run([node, suite_js, "list"], capture_output=True, text=True, timeout=60, check=True).stdout
    names, inside = [], False
    for line in out.splitlines():
        if line.strip().lower().startswith("server scenarios"):
            inside = True
        elif inside and line.strip().startswith("- "):
            names.append(line.strip()[2:].split(" [")[0].strip())
        elif inside and line.strip():
            inside = False
    return names


def result_dirs(out):
    return set(os.listdir(out)) if os.path.isdir(out) else set()


def summarize(path):
    with open(path) as f:
        checks = json.load(f)
    summary = {"passed": 0, "failed": 0, "warnings": 0, "failures": []}
    for check in checks if isinstance(checks, list) else []:
        status = str(check.get("status", "")).upper()
        if status == "SUCCESS":
            summary["passed"] += 1
        elif status == "FAILURE":
            summary["failed"] += 1
            message = check.get("errorMessage") or check.get("description") or ""
            summary["failures"].append(f"{check.get('id', '?')}: {message}")
        elif status == "WARNING":
            summary["warnings"] += 1
    return summary


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--node", required=True)
    p.add_argument("--suite-js", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--scenario", action="append", default=[])
    p.add_argument("--timeout", type=float, default=900, help="seconds for the whole run")
    a = p.parse_args()

    try:
        expected = list(a.scenario) or server_scenarios(a.node, a.suite_js)
    except (OSError, subprocess.SubprocessError) as e:
        print(f"conformance suite could not list scenarios: {e}", file=sys.stderr)
        return 2
    os.makedirs(a.out, exist_ok=True)
    before = result_dirs(a.out)

    base = [a.node, a.suite_js, "server", "--url", a.url, "-o", a.out]
    runs = [base + ["--scenario", s] for s in a.scenario] or [base + ["--suite", "all"]]
    codes = []
    for cmd in runs:
        try:
            done = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr, timeout=a.timeout)
        except (OSError, subprocess.SubprocessError) as e:
            print(f"conformance suite could not run: {e}", file=sys.stderr)
            return 2
        codes.append(done.returncode)

    # This run's result directories; the newest per scenario if one ran twice.
    found = {}
    for d in sorted(result_dirs(a.out) - before):
        m = DIR_RE.match(d)
        path = os.path.join(a.out, d, "checks.json")
        if m and os.path.isfile(path):
            found[m.group("name")] = path
    if not found:
        print(f"conformance suite wrote no results (exit codes {codes})", file=sys.stderr)
        return 2

    scenarios = {}
    for name in expected + sorted(set(found) - set(expected)):
        if name in found:
            try:
                scenarios[name] = summarize(found[name])
            except (OSError, ValueError) as e:
                scenarios[name] = {"passed": 0, "failed": 1, "warnings": 0, "failures": [f"{name}: {e}"]}
        else:
            scenarios[name] = {"passed": 0, "failed": 1, "warnings": 0, "failures": [f"{name}: no results written"]}

    passed = sum(1 for s in scenarios.values() if s["failed"] == 0)
    report = {
        "scenarios": scenarios,
        "passed": passed,
        "failed": len(scenarios) - passed,
        "checks": {k: sum(s[k] for s in scenarios.values()) for k in ("passed", "failed", "warnings")},
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
