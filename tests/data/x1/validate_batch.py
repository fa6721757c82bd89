#!/usr/bin/env python3
"""Many X1 documents against the ETSI TS 103 221-1 schemas, building them once: the same
schemas and locations as shared/tools/x1_validate.py ("etsi") and as validate_ext.py with
tapir's targetIdentifierExtension schema ("ext").
Usage: validate_batch.py SHARED_ETSI_DIR TAPIR_XSD
Reads "<etsi|ext> <length>\\n" then that many bytes, repeatedly; answers each with one line,
'valid' or 'invalid: <first error>'."""
import sys
import xmlschema
d, ext = sys.argv[1].rstrip('/') + '/', sys.argv[2]
base = [('http://uri.etsi.org/03280/common/2017/07', d + 'TS_103_280.xsd'),
        ('http://uri.etsi.org/03221/X1/2017/10/HashedID', d + 'TS_103_221_01_HashedID.xsd')]
schemas = {
    'etsi': xmlschema.XMLSchema(d + 'TS_103_221_01.xsd', locations=base),
    'ext': xmlschema.XMLSchema(d + 'TS_103_221_01.xsd', locations=base + [('urn:tapir:x1:target-extension:1', ext)]),
}
inp = sys.stdin.buffer
while True:
    head = inp.readline()
    if not head:
        break
    kind, n = head.split()
    doc = inp.read(int(n))
    try:
        schemas[kind.decode()].validate(doc.decode())
        print('valid', flush=True)
    except Exception as e:
        print('invalid: ' + str(e).splitlines()[0][:300].replace('\n', ' '), flush=True)
