#!/usr/bin/env python3
"""Every Grafana dashboard panel says its unit and puts one kind of quantity on its axis (issue 27
item 6): each panel other than a row has fieldConfig.defaults.unit; no panel plots seconds, bytes,
steps or token counts together (Keel's metric names end in their unit: *_seconds, *_bytes, *_step);
and a panel of seconds or bytes carries that unit. Usage: check_dashboard_units.py DASHBOARD.json...
Prints each problem with the panel's id and title and exits 1 on any."""
import json
import re
import sys

METRIC = re.compile(r"\bkeel_[a-z0-9_]+")
TIME_UNITS = {"s", "ms", "us", "ns", "dtdurations", "dtdurationms"}
BYTE_UNITS = {"bytes", "decbytes", "kbytes", "mbytes", "gbytes"}


def kind_of(metric):
    """The kind of quantity a Keel metric holds, from its name, or None for other numbers."""
    base = re.sub(r"_(sum|count|bucket|total)$", "", metric)
    if base.endswith("_seconds"):
        return "seconds"
    if base.endswith("_bytes"):
        return "bytes"
    if base == "keel_step" or base.endswith("_step"):
        return "steps"
    if base == "keel_tokens_seen":
        return "tokens"
    return None


def problems(dashboard):
    found = []
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            continue
        name = f"panel {panel.get('id')} '{panel.get('title')}'"
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if not unit:
            found.append(f"{name}: no unit (fieldConfig.defaults.unit)")
        kinds = set()
        for target in panel.get("targets", []):
            for metric in METRIC.findall(target.get("expr", "")):
                if kind_of(metric):
                    kinds.add(kind_of(metric))
        if len(kinds) > 1:
            found.append(f"{name}: mixes {', '.join(sorted(kinds))} on one axis: split it")
        elif kinds == {"seconds"} and unit not in TIME_UNITS:
            found.append(f"{name}: plots seconds with unit '{unit}'")
        elif kinds == {"bytes"} and unit not in BYTE_UNITS:
            found.append(f"{name}: plots bytes with unit '{unit}'")
    return found


def main(paths):
    failed = False
    for path in paths:
        with open(path, encoding="utf-8") as f:
            dashboard = json.load(f)
        for problem in problems(dashboard):
            print(f"{path}: {problem}")
            failed = True
        panels = sum(1 for p in dashboard.get("panels", []) if p.get("type") != "row")
        print(f"{path}: {panels} panels checked")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
