// Every vector the Rust code wrote (vectors.json) checked against this client: `node --test clients/node/`.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { inspect } from 'node:util';

import {
  associatedData,
  canonicalize,
  decryptPayload,
  DecryptError,
  documentMessage,
  encryptPayload,
  KeyRing,
  KeyRingError,
  passInDocument,
  passMessage,
  signDocument,
  signPass,
  verifyDocument,
  verifyPass,
} from './index.mjs';

const vectors = JSON.parse(readFileSync(new URL('./vectors.json', import.meta.url), 'utf8'));
const ring = KeyRing.fromSecretJson(vectors.key_secret);
const rotated = KeyRing.fromSecretJson(JSON.stringify({ ...JSON.parse(vectors.key_secret), current: 'k2' }));

function passOf(fields, payloadJson) {
  return payloadJson === null || payloadJson === undefined ? { ...fields } : { ...fields, payload: JSON.parse(payloadJson) };
}

function envelopeOf(hexEnvelope) {
  return { ...hexEnvelope, nonce: Buffer.from(hexEnvelope.nonce, 'hex'), ct: Buffer.from(hexEnvelope.ct, 'hex') };
}

test('pass signatures and their messages equal the Rust ones', () => {
  for (const vector of vectors.pass_signatures) {
    const keys = vector.pass_sig_kid === 'k2' ? rotated : ring;
    const options = { userId: vector.user_id, array: vector.array, pass: passOf(vector.fields, vector.payload_json) };
    assert.equal(passMessage(vector.pass_sig_kid, options).toString('hex'), vector.message, vector.name);
    assert.deepEqual(signPass(keys, options), { pass_sig: vector.pass_sig, pass_sig_kid: vector.pass_sig_kid }, vector.name);
    const signed = { ...options, pass: { ...options.pass, pass_sig: vector.pass_sig, pass_sig_kid: vector.pass_sig_kid } };
    assert.deepEqual(verifyPass(ring, signed), { verdict: 'authenticated' }, vector.name);
  }
});

test('stored passes read with the Rust verdicts', () => {
  for (const check of vectors.pass_checks) {
    const options = { userId: check.user_id, array: check.array, pass: passOf(check.fields, check.payload_json) };
    assert.deepEqual(verifyPass(ring, options), check.expected, check.name);
  }
});

test('document signatures and their messages equal the Rust ones', () => {
  for (const vector of vectors.document_signatures) {
    const options = { userId: vector.user_id, document: vector.document };
    assert.equal(documentMessage('k1', options).toString('hex'), vector.message, vector.name);
    assert.deepEqual(signDocument(ring, options), { doc_sig: vector.doc_sig, doc_sig_kid: vector.doc_sig_kid }, vector.name);
  }
});

test('stored documents read with the Rust verdicts', () => {
  for (const check of vectors.document_checks) {
    assert.deepEqual(verifyDocument(ring, { userId: check.user_id, document: check.document }), check.expected, check.name);
  }
});

test('a pass is authenticated only within an authenticated document', () => {
  const [ok, no, bad] = [{ verdict: 'authenticated' }, { verdict: 'unauthenticated' }, { verdict: 'forged', reason: 'mismatch' }];
  assert.deepEqual(passInDocument(ok, ok), ok);
  assert.deepEqual(passInDocument(ok, bad), { verdict: 'forged', reason: 'not_listed' });
  assert.deepEqual(passInDocument(ok, no), { verdict: 'forged', reason: 'document_unsigned' });
  assert.deepEqual(passInDocument(no, ok), no);
  assert.deepEqual(passInDocument(bad, ok), bad);
  assert.deepEqual(passInDocument(ok, { verdict: 'unknown_key', kid: 'k9' }), { verdict: 'unknown_key', kid: 'k9' });
});

test('the Rust ciphertexts decrypt to their plaintexts under the same associated data', () => {
  for (const vector of vectors.encryptions) {
    const binding = { userId: vector.user_id, array: vector.array, passUuid: vector.pass_uuid };
    assert.equal(associatedData('k1', binding).toString('hex'), vector.associated_data, vector.name);
    assert.equal(decryptPayload(ring, binding, envelopeOf(vector.envelope)).toString('hex'), vector.plaintext, vector.name);
  }
});

test('what this client encrypts decrypts, with a new nonce each time', () => {
  for (const vector of vectors.encryptions) {
    const binding = { userId: vector.user_id, array: vector.array, passUuid: vector.pass_uuid };
    const plaintext = Buffer.from(vector.plaintext, 'hex');
    const [a, b] = [encryptPayload(ring, binding, plaintext), encryptPayload(ring, binding, plaintext)];
    assert.equal(a.alg, 'A256GCM');
    assert.equal(a.kid, 'k1');
    assert.notDeepEqual(a.nonce, b.nonce);
    assert.deepEqual(decryptPayload(ring, binding, a), plaintext);
    // The driver returns binaries as Binary objects: `buffer` and `sub_type`.
    const asStored = { ...a, nonce: { buffer: new Uint8Array(a.nonce), sub_type: 0 }, ct: { buffer: new Uint8Array(a.ct), sub_type: 0 } };
    assert.deepEqual(decryptPayload(ring, binding, asStored), plaintext);
  }
});

test('each damaged, moved or relabelled ciphertext fails as in Rust', () => {
  for (const failure of vectors.decrypt_failures) {
    const binding = { userId: failure.user_id, array: failure.array, passUuid: failure.pass_uuid };
    assert.throws(
      () => decryptPayload(ring, binding, envelopeOf(failure.envelope)),
      (error) => error instanceof DecryptError && error.code === failure.error,
      failure.name,
    );
  }
});

test('canonical text follows RFC 8785 and refuses what has no exact form', () => {
  // By UTF-16 code units: U+1F600 (D83D DE00) before U+E000, unlike code point order.
  assert.equal(canonicalize({ b: [1, -0, 1e21, 1e-7], a: 'é\n', '\ue000': 2, '\u{1f600}': 1 }), '{"a":"é\\n","b":[1,0,1e+21,1e-7],"\u{1f600}":1,"\ue000":2}');
  for (const value of [NaN, Infinity, undefined, 1n, new Date(0), '\ud800', { a: undefined }]) {
    assert.throws(() => canonicalize(value), TypeError, inspect(value));
  }
  let deep = 1;
  for (let i = 0; i < 101; i += 1) deep = [deep];
  assert.throws(() => canonicalize(deep), TypeError);
});

test('key bytes never show in a printed ring or an error', () => {
  const secret = JSON.parse(vectors.key_secret);
  const key = secret.keys.k1;
  const keyHex = Buffer.from(key, 'base64').toString('hex');
  for (const shown of [inspect(ring), JSON.stringify(ring), String(ring)]) {
    assert.ok(!shown.includes(key) && !shown.includes(keyHex), shown);
  }
  assert.equal(inspect(ring), 'KeyRing { current: "k1", ids: ["k1","k2"] }');
  const bad = [
    `{"current":"k1","keys":{"${key}":"k1"}}`,
    `{"current":"${key}","keys":{"k1":"${key}"}}`,
    `{"current":"k1","keys":{"k1":"${key.slice(0, 40)}"}}`,
    `{"current":"k1","keys":{"k1":"${key}"},"extra":"${key}"}`,
    `{"current":"k1","keys":{"k1":"${key}"`,
    `{"current":"k1","keys":{"k1":["${key}"]}}`,
  ];
  for (const text of bad) {
    assert.throws(
      () => KeyRing.fromSecretJson(text),
      (error) => error instanceof KeyRingError && !error.message.includes(key.slice(0, 8)) && !inspect(error).includes(key.slice(0, 8)),
      text,
    );
  }
});
