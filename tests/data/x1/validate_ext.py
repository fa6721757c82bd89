#!/usr/bin/env python3
"""Like shared/tools/x1_validate.py, plus tapir's own targetIdentifierExtension schema
(schemas/tapir-x1-ext.xsd), so that documents carrying tapir cloud targets validate strictly.
Usage: validate_ext.py SHARED_ETSI_DIR TAPIR_XSD FILE|-   Prints 'valid' or the first error."""
import sys
import xmlschema
d, ext, src = sys.argv[1].rstrip('/') + '/', sys.argv[2], sys.argv[3]
s = xmlschema.XMLSchema(d + 'TS_103_221_01.xsd', locations=[
    ('http://uri.etsi.org/03280/common/2017/07', d + 'TS_103_280.xsd'),
    ('http://uri.etsi.org/03221/X1/2017/10/HashedID', d + 'TS_103_221_01_HashedID.xsd'),
    ('urn:tapir:x1:target-extension:1', ext)])
data = sys.stdin.buffer.read() if src == '-' else open(src, 'rb').read()
try:
    s.validate(data.decode())
    print('valid')
except Exception as e:
    print('invalid: ' + str(e).splitlines()[0][:300])
    sys.exit(1)
