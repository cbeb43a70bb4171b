#!/usr/bin/env python3
"""Summarizes the raw outputs next to this file: one row per run, then medians per configuration."""
import glob, json, os, re, statistics, sys
from collections import defaultdict

here = os.path.dirname(os.path.abspath(__file__))
rows = defaultdict(list)
for path in sorted(glob.glob(os.path.join(here, '*-[0-9]*.txt'))):
    name, i = re.match(r'(.*)-(\d+)\.txt$', os.path.basename(path)).groups()
    r = {'run': i}
    for line in open(path):
        if line.startswith('{'):
            j = json.loads(line)
            r.update(delivered_per_s=j['delivered_per_s'], sent=j['sent'], acked=j['acked_ok'], missing=j['missing'],
                     sendack_p50_ms=j['sendack_us']['p50'] / 1000, sendack_p99_ms=j['sendack_us']['p99'] / 1000,
                     recv_p50_ms=j['recv_us']['p50'] / 1000, online=j['online'])
        elif m := re.match(r'# server VmRSS: (\d+) kB', line):
            r['rss_kb'] = int(m.group(1))
        elif m := re.match(r'# data dir: (\d+) kB allocated, (\d+) kB apparent', line):
            r['dir_alloc_kb'], r['dir_apparent_kb'] = int(m.group(1)), int(m.group(2))
        elif m := re.match(r'# server stopped in ([\d.]+) s; data dir after the stop: (\d+) kB allocated, (\d+) kB apparent', line):
            r['stop_s'], r['dir_after_kb'] = float(m.group(1)), int(m.group(2))
        elif m := re.match(r'# metrics: limaoim_(\S+) (\d+)', line):
            r[m.group(1)] = int(m.group(2))
        elif m := re.match(r'# webhook_sink: event=(\S+) requests=(\d+) body_bytes=(\d+) elements=(\d+)', line):
            r['sink_' + m.group(1) + '_req'] = int(m.group(2))
            r['sink_' + m.group(1) + '_elems'] = int(m.group(4))
    rows[name].append(r)
for name, rs in rows.items():
    print(f'== {name}')
    for r in rs:
        print('  ', json.dumps(r))
    keys = [k for k in rs[0] if k != 'run' and all(isinstance(x.get(k), (int, float)) for x in rs)]
    print('   median:', json.dumps({k: statistics.median(x[k] for x in rs) for k in keys}))
