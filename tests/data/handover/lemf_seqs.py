#!/usr/bin/env python3
"""Runs shared/tools/lemf_check.py unchanged and, after its report, writes REPORT.seqs.json:
- per "channel|LIID|CIN|kind": the sequence numbers seen (a test checks that the union of
  several LEMF runs, an outage in between, covers every number);
- "_integrity": hash checks recomputed here as SHA-256 over the concatenated BER encodings of
  the included PDUs of the same (LIID, CIN, IRI|CC) (docs/handover.md's reading; lemf_check's
  own check hashes the PDUs' digests instead), and signature checks verified with the public
  key of LEMF_SIGN_KEY (PKCS#8 DER, Ed25519) over the concatenated checkValues of the hash
  PDUs listed;
- "_ipcc_pairs": "src>dst" of the IPv4 packets iPCC carried, with counts.

With LEMF_SEQ_LOG=FILE, each data PDU is also logged as "channel|LIID|CIN|kind seq" and
flushed as soon as it is accounted, so that what a LEMF killed with SIGKILL had received is known.

lemf_check's --idle end counts only from SIGUSR1 (../lemf_gate.py).

usage: [LEMF_SIGN_KEY=key.der] [LEMF_SEQ_LOG=file] lemf_seqs.py LEMF_CHECK_PY [lemf_check arguments...]
"""
import hashlib, importlib.util, json, os, sys, threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from lemf_gate import idle_end_from_usr1  # noqa: E402

spec = importlib.util.spec_from_file_location('lemf_check', sys.argv[1])
lemf = importlib.util.module_from_spec(spec)
sys.argv = [sys.argv[1]] + sys.argv[2:]
spec.loader.exec_module(lemf)

raw = {}      # (liid, cin, kind, seq) -> PDU bytes
checks = []   # (liid, cin, kind, seq, integrityCheck)
ipcc_pairs = {}  # "src>dst" of the IPv4 packets carried in iPCC -> count
mine = threading.Lock()
seq_log = open(os.environ['LEMF_SEQ_LOG'], 'w') if os.environ.get('LEMF_SEQ_LOG') else None
orig_account = lemf.account


# lemf_check's connection threads outlive its main(): set once main() has returned, so that
# a PDU arriving while the reports are written is neither recorded nor answered. Otherwise a
# keep-alive could be answered for PDUs read after the sequence numbers were taken, and the
# sender, rightly taking the answer as delivery, would drop PDUs that no report lists.
gate = threading.Lock()
closing = False


def account(pdu, channel):
    with gate:
        if closing:
            return None
        return account_open(pdu, channel)


def account_open(pdu, channel):
    reply = orig_account(pdu, channel)
    try:
        v = lemf.SPEC.decode('PS-PDU', pdu)
    except Exception:
        return reply
    h = v['pSHeader']
    liid = h['lawfulInterceptionIdentifier'].decode('latin-1')
    cin = h['communicationIdentifier'].get('communicationIdentityNumber')
    kind, body = v['payload']
    with mine:
        if seq_log and kind in ('cCPayloadSequence', 'iRIPayloadSequence'):
            k = 'cc' if kind == 'cCPayloadSequence' else 'iri'
            seq_log.write(f"{channel}|{liid}|{cin}|{k} {h['sequenceNumber']}\n")
            seq_log.flush()
        if kind == 'cCPayloadSequence':
            raw[(liid, cin, 'cc', h['sequenceNumber'])] = pdu
            for cc in body:
                ck, cv = cc['cCContents']
                pkt = cv.get('iPCCContents', ('', b''))[1] if ck == 'iPCC' else b''
                if isinstance(pkt, bytes) and len(pkt) >= 20 and pkt[0] >> 4 == 4:
                    pair = '.'.join(map(str, pkt[12:16])) + '>' + '.'.join(map(str, pkt[16:20]))
                    ipcc_pairs[pair] = ipcc_pairs.get(pair, 0) + 1
        elif kind == 'iRIPayloadSequence':
            raw[(liid, cin, 'iri', h['sequenceNumber'])] = pdu
        elif kind == 'tRIPayload' and body[0] == 'integrityCheck':
            ic = body[1]
            k = {'iRI': 'iri', 'cC': 'cc'}.get(ic.get('dataType'), '?')
            checks.append((liid, cin, k, h['sequenceNumber'], ic))
    return reply


idle_end_from_usr1(lemf)
lemf.account = account
lemf.main()
with gate:
    closing = True

res = {'hash_ok': 0, 'hash_differs': 0, 'hash_incomplete': 0, 'sig_ok': 0, 'sig_bad': 0, 'sig_unchecked': 0}
pub = None
if os.environ.get('LEMF_SIGN_KEY'):
    from cryptography.hazmat.primitives.serialization import load_der_private_key
    pub = load_der_private_key(open(os.environ['LEMF_SIGN_KEY'], 'rb').read(), None).public_key()
hash_values = {}
for liid, cin, k, seq, ic in checks:
    if ic['checkType'] == 'hash':
        parts = [raw.get((liid, cin, k, n)) for n in ic['includedSequenceNumbers']]
        hash_values[(liid, cin, k, seq)] = ic['checkValue']
        if None in parts:
            res['hash_incomplete'] += 1
        elif hashlib.sha256(b''.join(parts)).digest() == ic['checkValue']:
            res['hash_ok'] += 1
        else:
            res['hash_differs'] += 1
for liid, cin, k, seq, ic in checks:
    if ic['checkType'] == 'signature':
        vals = [hash_values.get((liid, cin, k, n)) for n in ic['includedSequenceNumbers']]
        if pub is None or None in vals:
            res['sig_unchecked'] += 1
            continue
        try:
            pub.verify(ic['checkValue'], b''.join(vals))
            res['sig_ok'] += 1
        except Exception:
            res['sig_bad'] += 1

report = sys.argv[sys.argv.index('--report') + 1]
with lemf.lock:
    out = {'|'.join(map(str, key)): sorted(v) for key, v in lemf.seqs.items()}
out['_integrity'] = res
out['_ipcc_pairs'] = ipcc_pairs
json.dump(out, open(report + '.seqs.json', 'w'), sort_keys=True)
