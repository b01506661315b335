#!/usr/bin/env python3
"""Turns bench/compare.sh's results (JSON lines) into BENCHMARKS.md: medians, ratios, targets.

Usage: summarize.py RESULTS.jsonl RUNS > BENCHMARKS.md
"""
import json
import math
import os
import platform
import statistics
import subprocess
import sys
from collections import defaultdict
from datetime import datetime, timezone

ORDER = ["hubcat", "hubcat-raw", "textbook-go", "textbook-improved-go", "ncat", "socat", "reference"]
LABELS = {
    "hubcat": "hubcat (default `lines`: peer-labelled, escaped)",
    "hubcat-raw": "hubcat `--format raw`",
    "textbook-go": "textbook Go server (512 B reads, `Received data:`)",
    "textbook-improved-go": "textbook improved Go server (25 B chunks)",
    "ncat": "`ncat -lk -m 20000` (raw, unlabelled)",
    "socat": "`socat -u ... fork STDOUT` (raw, a process per client)",
    "reference": "minimal tokio copy server (raw, no formatting): the reference limit",
}


RELAY_LABELS = {
    "hubcat-echo": "`hubcat serve --mode echo` (transcript on stdout)",
    "socat-pipe": "`socat TCP-LISTEN:...,fork PIPE`",
    "ncat-exec-cat": "`ncat -lk -e /bin/cat`",
    "reference-echo": "minimal tokio echo server (reference)",
    "hubcat-chat": "`hubcat serve --mode chat` (nicknames, escaping, transcript)",
    "hubcat-broker": "`hubcat serve --mode broker` (transcript)",
    "ncat-chat": "`ncat -lk --chat`",
    "ncat-broker": "`ncat -lk --broker`",
    "reference-relay": "minimal tokio relay, broadcast channel (reference)",
}


def relay_sections(runs, w):
    """Echo and fan-out results (issue 5)."""
    echo = ["hubcat-echo", "socat-pipe", "ncat-exec-cat", "reference-echo"]
    relays = ["hubcat-chat", "hubcat-broker", "ncat-chat", "ncat-broker", "reference-relay"]
    if not any(s in echo + relays for (s, _) in runs):
        return
    rooms = sorted({c for (_, c) in runs if c.startswith("room-")}, key=lambda c: int(c.split("-")[1]))
    w("## Relaying: echo and fan-out (issue 5)\n")
    w("- **echo-50**: 50 clients ping-pong 64-byte messages for 5 s (`hubcat bench echo`).")
    w("- **room-N**: N clients in one room; 5 of them send 1,000 messages of 64 B at 200/s each")
    w("  (the room of 5,000: 100 messages at 100/s); each message carries its send time, and every")
    w("  other client must receive it (`hubcat bench fanout`). Latency is send to receive.\n")
    w("| echo server | round trips/s | p99 ms |")
    w("|---|---|---|")
    for s in echo:
        rt = median(runs, s, "echo-50", "round_trips_per_second")
        p99 = median(runs, s, "echo-50", "p99")
        w(f"| {RELAY_LABELS[s]} | {fmt(rt, '{:,.0f}')} | {fmt(p99, '{:.2f}')} |")
    w("")
    header = ["relay"]
    for room in rooms:
        header += [f"{room}: p99 ms", f"{room}: lost"]
    header.append("CPU µs per delivery, room-500")
    w("| " + " | ".join(header) + " |")
    w("|" + "---|" * len(header))
    for s in relays:
        row = [RELAY_LABELS[s]]
        for room in rooms:
            if (s, room) not in runs:
                row += ["not run", "not run"]
                continue
            results = [m for m in runs[(s, room)] if m]
            if not results:
                row += ["fails", "fails"]
                continue
            row.append(fmt(median(runs, s, room, "p99"), "{:.1f}"))
            lost = median(runs, s, room, "lost")
            expected = median(runs, s, room, "expected")
            row.append("0" if lost == 0 else f"{lost:,.0f} of {expected:,.0f}")
        row.append(fmt(median(runs, s, "room-500", "server_cpu_per_delivery"), "{:.2f}"))
        w("| " + " | ".join(row) + " |")
    w("")
    echo_rt = lambda s: median(runs, s, "echo-50", "round_trips_per_second")
    p99 = lambda s: median(runs, s, "room-500", "p99")
    cpu = lambda s: median(runs, s, "room-500", "server_cpu_per_delivery")
    rows = [
        ("room of 500, p99: chat vs `ncat --chat`", ratio(p99("hubcat-chat"), p99("ncat-chat")), "<= 0.5x, no loss"),
        ("room of 500, p99: broker vs `ncat --broker`", ratio(p99("hubcat-broker"), p99("ncat-broker")), "<= 0.5x, no loss"),
        ("echo round trips vs socat", ratio(echo_rt("hubcat-echo"), echo_rt("socat-pipe")), ">= 2.5x"),
        ("echo round trips vs `ncat -e cat`", ratio(echo_rt("hubcat-echo"), echo_rt("ncat-exec-cat")), ""),
        ("echo round trips vs reference", ratio(echo_rt("hubcat-echo"), echo_rt("reference-echo")), ""),
        ("reference echo vs socat (the ceiling here)", ratio(echo_rt("reference-echo"), echo_rt("socat-pipe")), ""),
        ("CPU per delivery, chat vs reference", ratio(cpu("hubcat-chat"), cpu("reference-relay")), "<= 1.2x"),
        ("CPU per delivery, broker vs reference", ratio(cpu("hubcat-broker"), cpu("reference-relay")), "<= 1.2x"),
    ]
    w("| measure | hubcat | target |")
    w("|---|---|---|")
    for name, value, target in rows:
        w(f"| {name} | {value} | {target} |")
    w("")


def load(path):
    runs = defaultdict(list)  # (server, case) -> [metrics dict or None]
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            row = json.loads(line)
            result = row["result"]
            metrics = None if result is None else {k: v["value"] for k, v in result["metrics"].items()}
            runs[(row["server"], row["case"])].append(metrics)
    return runs


def median(runs, server, case, metric):
    values = [m[metric] for m in runs.get((server, case), []) if m and metric in m and m[metric] is not None]
    values = [v for v in values if not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(values) if values else None


def hold_cell(runs, server, case, conns):
    """Memory per held connection, or why the server could not hold them."""
    results = [m for m in runs.get((server, case), []) if m]
    if not results:
        return "not run" if (server, case) not in runs else "fails (no result)"
    held = statistics.median(m.get("held", 0) for m in results)
    alive = statistics.median(m.get("server_alive", 0) for m in results)
    if alive < 1:
        return f"fails: exits (held {held:,.0f} of {conns:,})"
    if held < conns * 0.99:
        return f"fails: holds {held:,.0f} of {conns:,}"
    per_conn = median(runs, server, case, "pss_per_connection")
    served = median(runs, server, case, "new_client_served_in")
    served = f", new client in {served:.1f} ms" if served is not None else ", new client not served"
    return f"{per_conn:.2f} KiB{served}"


def nofile_cell(runs, server):
    results = [m for m in runs.get((server, "nofile-256"), []) if m]
    if not results:
        return "exits (no result)"
    alive = statistics.median(m.get("server_alive", 0) for m in results)
    return "survives" if alive >= 1 else "exits"


def fmt(value, pattern, missing="fails"):
    return missing if value is None else pattern.format(value)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}x"


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            mem_kib = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kib = 0
    return f"{os.cpu_count()} cores ({model}), {mem_kib / 1024 / 1024:.0f} GiB, Linux {platform.release()}"


def git_rev():
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main():
    path, runs_count = sys.argv[1], int(sys.argv[2])
    runs = load(path)
    cases = {case for (_, case) in runs}
    hold_cases = sorted((c for c in cases if c.startswith("hold-")), key=lambda c: int(c.split("-")[1]))
    out = []
    w = out.append
    w("# hubcat benchmarks\n")
    w("Generated by `bench/compare.sh` (do not edit by hand; notes on what each change bought are in")
    w("`bench/optimizations.md` and copied below).\n")
    w(f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    w(f"- machine: {machine()}; client, server and output reader share the cores")
    w(f"- hubcat commit: {git_rev()}")
    w(f"- medians of {runs_count} runs per cell; every server raced in the same run, in turn\n")
    w("Scenarios (`hubcat bench SCENARIO --spawn 'SERVER'`):\n")
    w("- **ingest**: 100 clients connect, then each streams 20,000 lines of 64 B (128 MB); the clock")
    w("  stops when the server has printed the last line. CPU is the server's, from /proc. The")
    w("  textbook improved server writes one byte per system call, so it gets 500 lines per client.")
    for case in hold_cases:
        n = int(case.split("-")[1])
        w(f"- **{case}**: {n:,} connections each send one line and stay idle for 15 s; the server's PSS")
        w("  (process tree) minus its baseline after a warm-up, per connection; then a new client's")
        w("  line is timed from connect to printed. (Runs before 2026-12-06 read memory after 1 s idle.)")
    w("- **churn**: 20,000 connections (connect, one line, close), 50 at a time.")
    w("- **nofile-256**: the server under `prlimit --nofile=256` while 300 clients connect: does it")
    w("  survive?\n")

    w("## Results\n")
    header = ["server", "ingest MB/s", "server CPU s/GB"] + [f"memory per idle conn, {c[5:]} held" for c in hold_cases]
    header += ["churn conn/s", "out of descriptors"]
    w("| " + " | ".join(header) + " |")
    w("|" + "---|" * len(header))
    for server in ORDER:
        if not any(s == server for (s, _) in runs):
            continue
        row = [LABELS[server]]
        row.append(fmt(median(runs, server, "ingest", "throughput"), "{:,.0f}"))
        row.append(fmt(median(runs, server, "ingest", "server_cpu_per_gb"), "{:.2f}"))
        if server == "hubcat-raw":
            row += ["(same as hubcat)"] * (len(hold_cases) + 2)
        else:
            for case in hold_cases:
                row.append(hold_cell(runs, server, case, int(case.split("-")[1])))
            row.append(fmt(median(runs, server, "churn", "connections_per_second"), "{:,.0f}"))
            row.append(nofile_cell(runs, server))
        w("| " + " | ".join(row) + " |")
    w("")

    w("## Ratios and targets (issue 3)\n")
    ingest = lambda s: median(runs, s, "ingest", "throughput")
    cpu = lambda s: median(runs, s, "ingest", "server_cpu_per_gb")
    churn = lambda s: median(runs, s, "churn", "connections_per_second")
    rows = [
        ("ingest, `lines` vs `ncat -lk` raw", ratio(ingest("hubcat"), ingest("ncat")), ">= 1.0x"),
        ("ingest, `lines` vs textbook Go server", ratio(ingest("hubcat"), ingest("textbook-go")), ">= 4x"),
        ("ingest, `lines` vs socat", ratio(ingest("hubcat"), ingest("socat")), ""),
        ("ingest, `raw` vs reference limit", ratio(ingest("hubcat-raw"), ingest("reference")), ">= 0.9x"),
        ("ingest, `lines` vs reference limit", ratio(ingest("hubcat"), ingest("reference")), ""),
        ("CPU s/GB, `lines` vs reference", ratio(cpu("hubcat"), cpu("reference")), "<= 1.5x"),
        ("CPU s/GB, `raw` vs reference", ratio(cpu("hubcat-raw"), cpu("reference")), "<= 1.5x"),
        ("churn vs reference limit", ratio(churn("hubcat"), churn("reference")), ">= 1.0x"),
        ("churn vs textbook Go server", ratio(churn("hubcat"), churn("textbook-go")), ""),
    ]
    for case in hold_cases:
        rows.append((f"memory per idle connection, {case[5:]} held", fmt(median(runs, "hubcat", case, "pss_per_connection"), "{:.3f} KiB"), "<= 0.55 KiB"))
        rows.append((f"  vs reference, {case[5:]} held", ratio(median(runs, "hubcat", case, "pss_per_connection"), median(runs, "reference", case, "pss_per_connection")), ""))
    w("| measure | hubcat | target |")
    w("|---|---|---|")
    for name, value, target in rows:
        w(f"| {name} | {value} | {target} |")
    w("")

    relay_sections(runs, w)

    w("## Commands\n")
    w("```sh")
    w("bench/compare.sh            # everything above, about 30 minutes")
    w("hubcat bench ingest --spawn 'target/release/hubcat serve 127.0.0.1 {port}'")
    w("hubcat bench hold --conns 10000 --spawn 'ncat -lk -m 20000 127.0.0.1 {port}'")
    w("hubcat bench churn --spawn 'socat -u TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr,backlog=4096 STDOUT'")
    w("hubcat bench echo --spawn 'target/release/hubcat serve 127.0.0.1 {port} --mode echo'")
    w("hubcat bench fanout --clients 500 --spawn 'ncat -lk --chat -m 20000 127.0.0.1 {port}'")
    w("```\n")
    notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optimizations.md")
    if os.path.exists(notes):
        with open(notes) as f:
            w(f.read().rstrip() + "\n")
    print("\n".join(out))


if __name__ == "__main__":
    main()
