#!/usr/bin/env python3
"""Writes the seed corpora in tests/fuzz/corpus/<target>/ from the real
captures in tests/vectors/*/nts-vectors.json plus a few generated inputs.
Each file is one input in the format documented at the top of the target's
fuzz_<target>.c.  Re-running it rewrites the same files."""
import glob
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
VEC = os.path.join(HERE, '..', 'vectors')


def put(target, name, data):
    d = os.path.join(HERE, 'corpus', target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


def hdr(li_vn_mode, stratum=0, poll=6, refid=0, tx=0x1122334455667788):
    return struct.pack('>BBbbIII4Q', li_vn_mode, stratum, poll, -20, 0, 0,
                       refid, 0, 0, 0, tx)


def ef(t, body, min_len=16):
    n = max(4 + len(body), min_len)
    n = (n + 3) & ~3
    return struct.pack('>HH', t, n) + body + bytes(n - 4 - len(body))


for path in sorted(glob.glob(os.path.join(VEC, '*', 'nts-vectors.json'))):
    tag = os.path.basename(os.path.dirname(path))
    v = json.load(open(path))
    req = bytes.fromhex(v['ntp_request']['hex'])
    resp = bytes.fromhex(v['ntp_response']['hex'])
    pt = bytes.fromhex(v['ntp_response']['plaintext'])
    cookie = next(bytes.fromhex(e['value'])
                  for e in v['ntp_request']['extension_fields']
                  if e['type'] == '0x0204')
    put('pkt_decode', tag + '-request', req)
    put('pkt_decode', tag + '-response', resp)
    put('ef', tag + '-request', b'\x01\x30' + req)
    put('ef', tag + '-response', b'\x01\x30' + resp)
    put('ef', tag + '-plaintext', b'\x00\x00' + pt)
    put('cookie_open', tag + '-cookie', b'\x00' + cookie)
    put('server', tag + '-request', b'\x00' + req)
    put('server', tag + '-cookie', b'\x02\x00\x00' + cookie)
    put('server', tag + '-plaintext', b'\x03\x01\x00' + pt)
    put('client', tag + '-response', b'\x00' + resp)
    put('client', tag + '-plaintext', b'\x02' + resp[:48] + pt)
    # NTS-KE records, for the KE engineer's ke_records / ke_server targets.
    put('ke_records', tag + '-ke-request',
        bytes.fromhex(v['ntske']['request_hex']))
    put('ke_records', tag + '-ke-response',
        bytes.fromhex(v['ntske']['response_hex']))

# Generated inputs.
epoch = 1700000000 // 604800
keys = ''.join('%08x %s\n' % (epoch * 8 + i, ('%02x' % (17 * i + 1)) * 32)
               for i in (0, 1, 2, 3))
put('keyring_load', 'four-keys',
    ('NTSNTP-KEYS 1\ninterval 604800\nepoch %d\n' % epoch + keys).encode())
put('keyring_load', 'other-interval',
    ('NTSNTP-KEYS 1\ninterval 3600\nepoch %d\n' % (1700000000 // 3600) +
     keys).encode())
put('keyring_load', 'old-epoch',
    ('NTSNTP-KEYS 1\ninterval 604800\nepoch %d\n' % (epoch - 2) +
     keys).encode())
plain_v4 = hdr(0x23)
plain_v3 = hdr(0x1b)
put('pkt_decode', 'plain-v4', plain_v4)
put('pkt_decode', 'plain-v3-mac20', plain_v3 + bytes(20))
put('pkt_decode', 'v4-ef-mac24', plain_v4 + ef(0x1234, b'abcd' * 5) + bytes(24))
put('pkt_decode', 'server-kod-rate', hdr(0xe4, 0, refid=0x52415445))
put('ef', 'min16-mac4', b'\x01\x30' + plain_v4 + ef(0x0104, bytes(32)) + bytes(4))
put('ef', 'min4-small', b'\x00\x00' + ef(0x0304, b'', 4) + ef(0x0204, bytes(8), 4))
put('cookie_open', 'roundtrip-15', b'\x01\x00\x00\x10' + bytes(range(64)))
put('cookie_open', 'roundtrip-17-cut', b'\x01\x01\x05\x00' + bytes(range(128)))
put('cookie_open', 'roundtrip-flip-keyid', b'\x01\x00\x00\x03' + bytes(64))
put('server', 'plain-v4', b'\x00' + plain_v4)
put('server', 'plain-v3-ratelimit', b'\x04' + plain_v3)
put('server', 'mode1-intact', b'\x01\x00\x00\xff\xff')
put('server', 'mode1-placeholders', b'\x01\x07\x00\x00\x40' + bytes(8))
put('server', 'mode1-after-auth', b'\x05\x02\x00\x01\x00' + ef(0x0304, bytes(100)))
put('server', 'mode3-enc-placeholders',
    b'\x03\x00\x00' + ef(0x0304, bytes(104), 4) * 3)
put('server', 'mode3-ratelimit', b'\x07\x03\x00')
put('server', 'mode3-short-buffer', b'\x0b\x02\x00')
put('server', 'raw-placeholder-before-cookie', b'\x00' + hdr(0x23) +
    ef(0x0104, bytes(32)) + ef(0x0304, bytes(20)) + ef(0x0204, bytes(104)) +
    struct.pack('>HHHH', 0x0404, 40, 16, 16) + bytes(32))
put('client', 'plain-ok', b'\x00' + hdr(0x24, 2, refid=0x7f7f0101))
put('client', 'plain-kod', b'\x00' + hdr(0x24, 0, refid=0x52415445))
put('client', 'nts-intact', b'\x01\x00\xff\xff')
put('client', 'nts-placeholders', b'\x01\x03\x00\x00')
put('client', 'nts-nak', b'\x02' + hdr(0xe4, 0, refid=0x4e54534e))
put('client', 'nts-cookies', b'\x02' + hdr(0x24, 2) +
    ef(0x0204, bytes(104), 4) * 2 + ef(0x9999, b'', 4))
