#!/usr/bin/env python3
"""Runs shared/tools/lemf_check.py unchanged and, beside it, decodes every PDU it receives with
asn1tools against the shared subset merged with tapir's additions (tools/tapir_asn1.py). After
lemf_check's report, writes REPORT.pdus.jsonl: one line per PDU in the order received on its
connection, {"channel", "hex", "pdu"} with the PDU as tools/tapir_asn1.py prints it, or
{"channel", "hex", "error"} for one it cannot decode.

lemf_check's --idle end counts here only from SIGUSR1, which the test sends once the sender is
done (tapir exited): until then a pause in delivery (tapir working between PDUs on a busy
machine, beside the other tests of its process) does not end the LEMF before the data is in.
After SIGUSR1 it ends as lemf_check would, --idle seconds after the last data.

usage: hi2_lemf.py LEMF_CHECK_PY [lemf_check arguments...]   (--report REPORT among them)
"""
import importlib.util, json, os, signal, sys, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
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


def arg(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


lemf.account = account
report = sys.argv[sys.argv.index('--report') + 1]
# lemf_check itself stops only at --max; the idle end is ours, from SIGUSR1 on.
IDLE = float(arg('--idle', '5'))
if '--idle' in sys.argv:
    sys.argv[sys.argv.index('--idle') + 1] = arg('--max', '120')
else:
    sys.argv += ['--idle', arg('--max', '120')]
sender_done = threading.Event()
signal.signal(signal.SIGUSR1, lambda *_: sender_done.set())


def end_when_idle():
    sender_done.wait()
    while True:
        t = lemf.last_data[0]
        if t and time.time() - t > IDLE:
            lemf.last_data[0] = 1.0  # long ago: lemf_check's loop ends at its next look
        time.sleep(0.1)


threading.Thread(target=end_when_idle, daemon=True).start()
lemf.main()
with mine:
    with open(report + '.pdus.jsonl', 'w') as f:
        for v in lines:
            f.write(json.dumps(v, sort_keys=True) + '\n')
