#!/usr/bin/env python3
"""Render docs/benchmarks.md from perf/compare's raw results (stdout).

Inputs: --results (JSON lines, one per scenario x server: sb-load's JSON line
under "result", or "skipped" with a reason), --floor (sb-floor's JSON line),
--argv (the compare command), --uptime (load average when it started).
"""
import argparse
import datetime
import json
import os
import platform
import subprocess


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mem_total():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1048576:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def git_rev():
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def fd_limit():
    try:
        import resource

        return resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    except (ImportError, OSError):
        return "unknown"


def num(v, fmt="{:,.0f}"):
    return "–" if v is None else fmt.format(v)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}×"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--floor", required=True)
    ap.add_argument("--argv", required=True)
    ap.add_argument("--uptime", default="")
    ap.add_argument("--tokio-read-buffer", default="library default")
    a = ap.parse_args()

    rows = []
    with open(a.results) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    floor = {}
    try:
        with open(a.floor) as f:
            floor = json.loads(f.read() or "{}")
    except (OSError, ValueError):
        pass
    per_k = {int(k): v for k, v in floor.get("us_per_msg", {}).items()}
    floor1 = per_k.get(1)

    out = []
    w = out.append
    w("# Benchmarks\n")
    w(f"Written by `{a.argv.strip()}` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC "
      f"at commit `{git_rev()}`; do not edit by hand, run it again. How to read it: `perf/README.md`.\n")
    w("## Machine\n")
    w(f"- CPU: {cpu_model()}, `nproc` = {os.cpu_count()}")
    w(f"- kernel: {platform.release()}; memory {mem_total()}; descriptor limit per process {fd_limit()}")
    w(f"- load when the run started: `{a.uptime.strip()}`")
    w("- the machine is shared: latency and throughput move with the neighbours' load; "
      "server CPU per delivery is the figure least disturbed by it\n")
    w("## Floor\n")
    if per_k:
        w(f"`sb-floor`: CPU of one `write` of {floor.get('frame_bytes', '?')}-byte frames to one of "
          f"{floor.get('conns', '?')} loopback TCP connections, charged to the writing thread, per message "
          "when k frames share one write.\n")
        w("| k | " + " | ".join(str(k) for k in sorted(per_k)) + " |")
        w("| --- |" + " ---: |" * len(per_k))
        w("| µs per message (median slice) | " + " | ".join(f"{per_k[k]:.3f}" for k in sorted(per_k)) + " |")
        lo = {int(k): v for k, v in floor.get("us_per_msg_min", {}).items()}
        hi = {int(k): v for k, v in floor.get("us_per_msg_max", {}).items()}
        if lo and hi:
            w("| slices min..max | " + " | ".join(f"{lo.get(k, 0):.3f}..{hi.get(k, 0):.3f}" for k in sorted(per_k)) + " |")
        w("")
        w(f"The **floor** below is k = 1: {floor1:.3f} µs per delivery.\n")
    else:
        w("The floor probe produced no result.\n")

    scenarios = []
    for r in rows:
        if r["scenario"] not in scenarios:
            scenarios.append(r["scenario"])
    for sc in scenarios:
        srows = [r for r in rows if r["scenario"] == sc]
        w(f"## Scenario `{sc}`\n")
        ok = [r for r in srows if "result" in r]
        if ok:
            x = ok[0]["result"]
            if x["publishers"] == 0:
                w(f"{x['conns_planned']} connections joined to {x['channels']} channels, nothing published, "
                  f"held for {x['duration_s']:g} s: memory per connection is the figure here.\n")
            else:
                w(f"{x['conns_planned']} connections in {x['channels']} channels, {x['publishers']} publishers "
                  f"at {x['rate_per_publisher']:g} msg/s each; warm-up {x['warmup_s']:g} s, "
                  f"measured window {x['duration_s']:g} s; sb-load with {x['threads']} thread(s).\n")
            if sc == "multinode":
                w("Two nodes of each server on one private Redis; publishers on the first node, every other "
                  "member on the second. Server figures are the two nodes' sums (Redis not included).\n")
        w("| server | deliveries/s (offered) | p50 ms | p99 ms | p99.9 ms | lost / dup / reordered "
          "| conns made / failed / dropped | RSS per conn (joined / loaded) | server CPU µs per delivery | × floor "
          "| server cores | sb-load CPU µs per delivery |")
        w("| --- |" + " ---: |" * 11)
        for r in srows:
            if "result" not in r:
                w(f"| {r['server']} | {r.get('skipped', 'skipped')} |" + " |" * 10)
                continue
            x = r["result"]
            sv = x.get("server") or {}
            cpu = sv.get("cpu_us_per_delivery")
            lat = x["latency"]
            w(f"| {r['server']} | {num(x['deliveries_per_s'])} ({num(x['offered_deliveries_per_s'])}) "
              f"| {lat['p50_us'] / 1000:.2f} | {lat['p99_us'] / 1000:.2f} | {lat['p999_us'] / 1000:.2f} "
              f"| {x['lost']}{'' if x.get('drain_complete', True) else ' †'} / {x['duplicated']} / {x['reordered']} "
              f"| {x['conns_made']} / {x['conns_failed']} / {x['conns_dropped']} "
              f"| {num(sv.get('rss_per_conn_bytes'))} B / {num(sv.get('rss_per_conn_loaded_bytes'))} B "
              f"| {num(cpu, '{:.2f}')} | {ratio(cpu, floor1)} | {num(sv.get('cpu_cores'), '{:.2f}')} "
              f"| {num(x.get('client_cpu_us_per_delivery'), '{:.2f}')} |")
        if any(not r["result"].get("drain_complete", True) for r in ok):
            w("\n† still missing when the drain ended (`--drain`, default 3 s after publishing stopped): "
              "lost, or queued so long in an overloaded server that they count as lost.")
        w("")
        wd = [r for r in ok if r.get("write_delay")]
        if wd:
            w("The server's own write delay (`switchboard_write_delay_seconds` from its `/metrics` at the "
              "end of the run, connect and drain included; quantiles interpolated within buckets):\n")
            w("| server | backlogs written | p50 ms | p90 ms | p99 ms |")
            w("| --- | ---: | ---: | ---: | ---: |")
            for r in wd:
                d = r["write_delay"]
                w(f"| {r['server']} | {num(d['count'])} | {d['p50_ms']:.3f} | {d['p90_ms']:.3f} "
                  f"| {d['p99_ms']:.3f} |")
            w("")
        if any(r.get("ceiling") for r in ok):
            w("Ceiling (`perf/ceiling`, fresh server): the highest rate per publisher sustained with "
              "p99 within the bound, nothing lost or dropped, and deliveries/s within 3% of the offer; "
              "`limited by` names what failed at the next step up (`generator`: sb-load could not offer "
              "more, so the true ceiling is higher).\n")
            w("| server | rate per publisher | deliveries/s | p99 ms | limited by |")
            w("| --- | ---: | ---: | ---: | --- |")
            for r in ok:
                c = r.get("ceiling") or {}
                p99 = c.get("p99_us")
                w(f"| {r['server']} | {num(c.get('ceiling_rate'), '{:g}')} "
                  f"| {num(c.get('ceiling_deliveries_per_s'))} "
                  f"| {num(None if p99 is None else p99 / 1000, '{:.2f}')} | {c.get('limited_by', '–')} |")
            w("")
        sb = next((r for r in ok if r["server"] == "switchboard"), None)
        variants = [r for r in ok if r["server"].startswith("switchboard-")]
        peers = [r for r in ok if not r["server"].startswith("switchboard")]
        if sb and variants:
            s = sb["result"]
            ss = s.get("server") or {}
            w("switchboard variants / plain switchboard, same run (lower is better; `wss`: the same binary "
              "with a certificate, sb-load over `wss://`; `deflate`: server and sb-load with `--compression`; "
              "wire bytes are what sb-load read from its sockets, TLS records or frames, per delivery):\n")
            w("| variant | deliveries/s (offered) | server CPU per delivery | RSS per conn (joined) "
              "| wire bytes per delivery | p99 | messages arrived compressed |")
            w("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
            w(f"| switchboard (plain) | {num(s['deliveries_per_s'])} ({num(s['offered_deliveries_per_s'])}) "
              f"| {num(ss.get('cpu_us_per_delivery'), '{:.2f}')} µs "
              f"| {num(ss.get('rss_per_conn_bytes'))} B | {num(s.get('wire_bytes_per_delivery'), '{:.1f}')} B "
              f"| {s['latency']['p99_us'] / 1000:.2f} ms | {s.get('compressed_messages', 0)} |")
            for v in variants:
                x = v["result"]
                vs = x.get("server") or {}
                w(f"| {v['server']} | {num(x['deliveries_per_s'])} ({num(x['offered_deliveries_per_s'])}) "
                  f"| {num(vs.get('cpu_us_per_delivery'), '{:.2f}')} µs "
                  f"({ratio(vs.get('cpu_us_per_delivery'), ss.get('cpu_us_per_delivery'))}) "
                  f"| {num(vs.get('rss_per_conn_bytes'))} B "
                  f"({ratio(vs.get('rss_per_conn_bytes'), ss.get('rss_per_conn_bytes'))}) "
                  f"| {num(x.get('wire_bytes_per_delivery'), '{:.1f}')} B "
                  f"({ratio(x.get('wire_bytes_per_delivery'), s.get('wire_bytes_per_delivery'))}) "
                  f"| {x['latency']['p99_us'] / 1000:.2f} ms | {x.get('compressed_messages', 0)} |")
            if any(v["result"]["offered_deliveries_per_s"] < 0.95 * s["offered_deliveries_per_s"] for v in variants):
                w("\nA variant was offered less than 95% of the plain run's load: sb-load could not keep up "
                  "(TLS and inflating cost it too), so its CPU per delivery is at a lower rate, where fewer "
                  "frames share a write; compare those rows with care.")
            if any(r["result"].get("action_bytes") for r in ok):
                w("\nPublished actions padded to about "
                  f"{ok[0]['result'].get('action_bytes')} bytes (`--action-bytes`): the stamp, then a batch of "
                  "editor cursors `{\"user\":\"user-3\",\"x\":412,\"y\":273,\"sel\":[9,15]}` whose numbers "
                  "change with every message (`perf/sb-load/src/payload.rs`).")
            w("")
        if sb and peers:
            s = sb["result"]
            ss = s.get("server") or {}
            w("switchboard / peer (throughput: higher is better; the rest: lower is better):\n")
            w("| peer | deliveries/s | p99 | RSS per conn (joined) | server CPU per delivery | ceiling deliveries/s |")
            w("| --- | ---: | ---: | ---: | ---: | ---: |")
            sc_ceil = (sb.get("ceiling") or {}).get("ceiling_deliveries_per_s")
            for p in peers:
                x = p["result"]
                ps = x.get("server") or {}
                w(f"| {p['server']} | {ratio(s['deliveries_per_s'], x['deliveries_per_s'])} "
                  f"| {ratio(s['latency']['p99_us'], x['latency']['p99_us'])} "
                  f"| {ratio(ss.get('rss_per_conn_bytes'), ps.get('rss_per_conn_bytes'))} "
                  f"| {ratio(ss.get('cpu_us_per_delivery'), ps.get('cpu_us_per_delivery'))} "
                  f"| {ratio(sc_ceil, (p.get('ceiling') or {}).get('ceiling_deliveries_per_s'))} |")
            w("")
        elif not sb:
            reason = next((r.get("skipped") for r in srows if r["server"] == "switchboard"), "not run")
            w(f"No switchboard/peer ratios: switchboard {reason}.\n")
        w("Commands (`PORT` and the server's pid are chosen by the script):\n")
        w("```sh")
        for r in ok:
            w(f"# {r['server']}")
            w(r["server_cmd"])
            w(r["load_cmd"] + " --server-pid PID")
        w("```\n")
    w("## Notes\n")
    w(f"- rust-tokio ran with `--ws-read-buffer`: {a.tokio_read_buffer}.")
    w("- The peers keep no presence, so switchboard runs with `--no-presence '*'`; when the publishing rate "
      "exceeds its default per-connection limit (100 msg/s), compare raises `--rate`/`--burst` above it.")
    w("- RSS per connection: server RSS once every connection joined (and at the end of the window) minus "
      "its RSS before the first connection, divided by connections. A server that keeps memory from an "
      "earlier run shows less; compare starts a fresh server for every run.")
    w("- Deliveries/s and latency count deliveries received inside the measured window; lost = deliveries "
      "owed (messages sent × joined members) minus distinct deliveries received by the end of the drain.")
    print("\n".join(out))


if __name__ == "__main__":
    main()
