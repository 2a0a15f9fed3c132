"""The matrix table: one row per cell, versions as the cell's nodes reported them."""

import glob
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def rows():
    out = []
    for path in sorted(glob.glob(os.path.join(HERE, "results", "*-*.json"))):
        if not path.endswith(".versions.json"):
            out.append(json.load(open(path)))
    return out


def table(found) -> str:
    lines = ["| suite | lvm2 | mdadm | Amanda | Amanda user, application dir | sudo | kernel | result | minutes |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in found:
        v = r["versions"]
        result = f"passed ({r['summary']})" if r["passed"] else f"FAILED: {r['reason']}"
        layout = f"{v['amanda-user']}, {v['application-dir']}" if "amanda-user" in v else r.get("layout", "-")
        lines.append(f"| {r['suite']} | {v.get('lvm2', '-')} | {v.get('mdadm', '-')} | "
                     f"{v.get('amanda-common', '-')} | {layout} | {v.get('sudo', '-')} | "
                     f"{v.get('kernel', r['kernel'])} | {result} | {r['minutes']} |")
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter):
    config = terminalreporter.config
    if hasattr(config, "workerinput") or not any("matrix" in str(a) for a in config.args):
        return              # only for a matrix run, not whenever tests/ is collected
    found = rows()
    if not found:
        return
    terminalreporter.write_sep("=", "matrix")
    terminalreporter.write_line(table(found))
    with open(os.path.join(HERE, "results.json"), "w") as f:
        json.dump(found, f, indent=1)
