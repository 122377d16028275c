#!/usr/bin/env python3
"""Known-answer NTS exchange with AEAD 30 (AES-128-GCM-SIV), 12-byte nonces.

Computed with pyca/cryptography (AESGCMSIV, AESSIV: OpenSSL), independently
of nettle and of libntsntp.  tests/test_server.c checks that libntsntp's
client builds exactly REQUEST and that its server answers exactly RESPONSE,
given the same inputs:

  - key file KEYFILE loaded at Unix time NOW (the cookie master keys);
  - C2S and S2C keys inside the request's cookie, sealed (AES-SIV-CMAC-256,
    empty associated data, nonce COOKIE_NONCE) with the current master key;
  - the client's random bytes: a counter from 0x00 (transmit timestamp 8,
    Unique Identifier 32, nonce 12); the server's: a counter from 0x60 (its
    12-byte nonce); the key ring's: a counter from 0x80 (the new cookie's
    16-byte nonce);
  - the server's clock: leap 0, stratum 10, precision -20, refid 7f7f0101,
    reference time RX - 2^32, receive time RX, transmit time TX.

Usage: python3 gen-nts-exchange.py > nts-exchange.txt
"""
import struct

from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV, AESSIV

INTERVAL, EPOCH = 604800, 2810
NOW = INTERVAL * EPOCH
KEY_ID, KEY = 0x1A2B3C40, bytes(range(0xA0, 0xC0))
NEXT_ID, NEXT = 0x1A2B3C41, bytes(range(0xC0, 0xE0))
C2S, S2C = bytes(range(0x40, 0x50)), bytes(range(0x50, 0x60))
COOKIE_NONCE = bytes(range(0xF0, 0x100))
RX, TX = 0xEEB21591E8270AF9, 0xEEB21591E82D06D8


def counter(start, n):
    return bytes((start + i) & 0xFF for i in range(n))


def cookie(nonce):
    # key id | nonce | AES-SIV-CMAC-256(master, AD "", nonce, 30 | 0 | C2S | S2C)
    pt = struct.pack(">HH", 30, 0) + C2S + S2C
    return struct.pack(">I", KEY_ID) + nonce + AESSIV(KEY).encrypt(pt, [b"", nonce])


def ef(ftype, body):
    n = 4 + len(body)
    pad = (-n) % 4
    return struct.pack(">HH", ftype, n + pad) + body + b"\0" * pad


def auth_ef(key, nonce, ad, plaintext):
    ct = AESGCMSIV(key).encrypt(nonce, plaintext, ad)
    body = struct.pack(">HH", len(nonce), len(ct))
    body += nonce + b"\0" * ((-len(nonce)) % 4) + ct + b"\0" * ((-len(ct)) % 4)
    return ef(0x0404, body)


crand = counter(0x00, 8 + 32 + 12)
tx0, uid, cnonce = crand[:8], crand[8:40], crand[40:52]
req_cookie = cookie(COOKIE_NONCE)
req = bytes([0x23]) + b"\0" * 39 + tx0  # LI 0, v4, mode 3; only TX set
req += ef(0x0104, uid) + ef(0x0204, req_cookie)
req += auth_ef(C2S, cnonce, req, b"")

snonce = counter(0x60, 12)
new_cookie = cookie(counter(0x80, 16))
resp = struct.pack(">BBbbII", 0x24, 10, 0, -20, 0, 0)  # v4, mode 4
resp += struct.pack(">I", 0x7F7F0101)
resp += struct.pack(">QQQQ", RX - (1 << 32), int.from_bytes(tx0, "big"), RX, TX)
resp += ef(0x0104, uid)
resp += auth_ef(S2C, snonce, resp, ef(0x0204, new_cookie))

print("# AEAD 30 NTS exchange (gen-nts-exchange.py); hex")
print("keyfile=" + (
    "NTSNTP-KEYS 1\\ninterval %d\\nepoch %d\\n%08x %s\\n%08x %s\\n"
    % (INTERVAL, EPOCH, KEY_ID, KEY.hex(), NEXT_ID, NEXT.hex())))
print("now=%d" % NOW)
print("c2s=" + C2S.hex())
print("s2c=" + S2C.hex())
print("request_cookie=" + req_cookie.hex())
print("request=" + req.hex())
print("new_cookie=" + new_cookie.hex())
print("response=" + resp.hex())
