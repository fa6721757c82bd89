#!/usr/bin/env python3
"""Independent decoder for tests: reads concatenated PS-PDUs (BER) from the file given, decodes
each with Python asn1tools against shared/schemas/etsi/derived/LI-PS-PDU-IPAccess-subset.asn and
prints one JSON line per PDU. bytes -> hex, CHOICE (name, value) -> {name: value},
GeneralizedTime -> its ISO form, NULL -> null.
usage: asn1_decode.py SCHEMA FILE
"""
import datetime, json, sys

import asn1tools


def norm(v):
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str):
        return {v[0]: norm(v[1])}
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    if isinstance(v, list):
        return [norm(x) for x in v]
    if isinstance(v, datetime.datetime):
        return v.isoformat()
    return v


def main():
    spec = asn1tools.compile_files(sys.argv[1], 'ber')
    data = open(sys.argv[2], 'rb').read()
    while data:
        v, n = spec.decode_with_length('PS-PDU', data)
        print(json.dumps(norm(v), sort_keys=True))
        data = data[n:]


if __name__ == '__main__':
    main()
