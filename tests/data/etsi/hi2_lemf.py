#!/usr/bin/env python3
"""Runs shared/tools/lemf_check.py unchanged and, beside it, decodes every PDU it receives with
asn1tools against the shared subset merged with tapir's additions (tools/tapir_asn1.py). After
lemf_check's report, writes REPORT.pdus.jsonl: one line per PDU in the order received on its
connection, {"channel", "hex", "pdu"} with the PDU as tools/tapir_asn1.py prints it, or
{"channel", "hex", "error"} for one it cannot decode.

lemf_check's --idle end counts only from SIGUSR1 (../lemf_gate.py).

usage: hi2_lemf.py LEMF_CHECK_PY [lemf_check arguments...]   (--report REPORT among them)
"""
import importlib.util, json, os, sys, threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..'))
from lemf_gate import idle_end_from_usr1  # noqa: E402
TOOL = os.path.join(HERE, '..', '..', '..', 'tools', 'tapir_asn1.py')

spec = importlib.util.spec_from_file_location('lemf_check', sys.argv[1])
lemf = importlib.util.module_from_spec(spec)
sys.argv = [sys.argv[1]] + sys.argv[2:]
spec.loader.exec_module(lemf)
tool_spec = importlib.util.spec_from_file_location('tapir_asn1', TOOL)
tool = importlib.util.module_from_spec(tool_spec)
tool_spec.loader.exec_module(tool)

import asn1tools  # noqa: E402

FULL = asn1tools.compile_string(tool.merged(tool.SUBSET), 'ber')
lines = []
mine = threading.Lock()
orig_account = lemf.account


def account(pdu, channel):
    reply = orig_account(pdu, channel)
    try:
        v = {'channel': channel, 'hex': pdu.hex(), 'pdu': tool.norm(FULL.decode('PS-PDU', pdu))}
    except Exception as e:  # noqa: BLE001 - every failure is reported, none is fatal
        v = {'channel': channel, 'hex': pdu.hex(), 'error': str(e)}
    with mine:
        lines.append(v)
    return reply


lemf.account = account
report = sys.argv[sys.argv.index('--report') + 1]
idle_end_from_usr1(lemf)
lemf.main()
with mine:
    with open(report + '.pdus.jsonl', 'w') as f:
        for v in lines:
            f.write(json.dumps(v, sort_keys=True) + '\n')
