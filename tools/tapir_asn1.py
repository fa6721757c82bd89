#!/usr/bin/env python3
"""Reads what tapir sends on HI2/HI3 with Python asn1tools: the shared ETSI LI-PS-PDU subset
(shared/schemas/etsi/derived/LI-PS-PDU-IPAccess-subset.asn) merged with tapir's additions
(schemas/tapir-hi2.asn: HI1-Operation, EmailIRI/EmailCC, tapir's national IP IRI parameters).

usage:
  tapir_asn1.py [--subset SUBSET.asn] schema OUT.asn         write the merged module
  tapir_asn1.py [--subset SUBSET.asn] [--plain] decode FILE|-  PS-PDUs (concatenated BER) -> JSON lines

--plain decodes with the shared subset alone, as a decoder without tapir's additions would.

JSON: bytes -> hex, CHOICE (name, value) -> {name: value}, times -> ISO 8601, NULL -> null;
a TapirIRI caseRecord is parsed back into JSON.
"""
import argparse, datetime, json, os, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ADDITIONS = os.path.join(HERE, '..', 'schemas', 'tapir-hi2.asn')
SUBSET = os.path.join(HERE, '..', '..', 'shared', 'schemas', 'etsi', 'derived', 'LI-PS-PDU-IPAccess-subset.asn')

# (anchor in the subset, text put after it): each anchor must occur exactly once.
INSERTS = [
    ("    tRIPayload              [2] TRIPayload,\n", "    hI1-Operation           [3] HI1-Operation,\n"),
    ("\nIRIContents ::= CHOICE\n{\n", "    emailIRI                    [1] EmailIRI,\n"),
    ("\nCCContents ::= CHOICE\n{\n", "    emailCC                     [1] EmailCC,\n"),
]
NATIONAL = "NationalIPIRIParameters ::= SEQUENCE\n{\n    countryCode     [1] PrintableString (SIZE (2)),\n    ...\n}\n"


def merged(subset_path):
    s = open(subset_path).read()
    for anchor, text in INSERTS:
        if s.count(anchor) != 1:
            sys.exit(f"tapir_asn1: the subset changed: {anchor!r} not found once")
        s = s.replace(anchor, anchor + text)
    if s.count(NATIONAL) != 1:
        sys.exit("tapir_asn1: the subset changed: NationalIPIRIParameters not found")
    s = s.replace(NATIONAL, "")
    end = s.rfind("END")
    additions = open(ADDITIONS).read()
    return s[:end] + "\n-- ===== tapir's additions (schemas/tapir-hi2.asn) =====\n\n" + additions + "\nEND\n"


def norm(v):
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str):
        return {v[0]: norm(v[1])}
    if isinstance(v, dict):
        out = {k: norm(x) for k, x in v.items()}
        if isinstance(out.get('caseRecord'), str):
            out['caseRecord'] = json.loads(out['caseRecord'])
        return out
    if isinstance(v, list):
        return [norm(x) for x in v]
    if isinstance(v, (datetime.datetime, datetime.date)):
        return v.isoformat()
    return v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--subset', default=SUBSET)
    ap.add_argument('--plain', action='store_true', help='the shared subset alone, without the additions')
    sub = ap.add_subparsers(dest='cmd', required=True)
    sub.add_parser('schema').add_argument('out')
    sub.add_parser('decode').add_argument('file')
    a = ap.parse_args()
    text = open(a.subset).read() if a.plain else merged(a.subset)
    if a.cmd == 'schema':
        open(a.out, 'w').write(text)
        return
    import asn1tools
    spec = asn1tools.compile_string(text, 'ber')
    data = sys.stdin.buffer.read() if a.file == '-' else open(a.file, 'rb').read()
    out = sys.stdout
    while data:
        v, n = spec.decode_with_length('PS-PDU', data)
        out.write(json.dumps(norm(v), sort_keys=True) + "\n")
        data = data[n:]


if __name__ == '__main__':
    main()
