#!/usr/bin/env python3
"""Runs shared/tools/lemf_check.py unchanged and, after its report, also writes the sequence
numbers it saw per (channel, LIID, CIN, kind) to REPORT.seqs.json, so that a test can check that
the union of several LEMF runs (an outage in between) covers every sequence number.

usage: lemf_seqs.py LEMF_CHECK_PY [lemf_check arguments...]
"""
import importlib.util, json, sys

spec = importlib.util.spec_from_file_location('lemf_check', sys.argv[1])
lemf = importlib.util.module_from_spec(spec)
sys.argv = [sys.argv[1]] + sys.argv[2:]
spec.loader.exec_module(lemf)
lemf.main()
report = sys.argv[sys.argv.index('--report') + 1]
with lemf.lock:
    out = {'|'.join(map(str, k)): sorted(v) for k, v in lemf.seqs.items()}
json.dump(out, open(report + '.seqs.json', 'w'), sort_keys=True)
