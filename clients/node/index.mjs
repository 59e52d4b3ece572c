// Signs, verifies, encrypts and decrypts `bytemark_tickets_cache` passes exactly as the Rust service does
// (domain/src/keys.rs, authenticity.rs, encryption.rs); vectors.json, written by the Rust code, holds both
// to it. Node's built-in `node:crypto` only: no npm dependency, no native module.

import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';

export const PASS_SIG = 'pass_sig';
export const PASS_SIG_KID = 'pass_sig_kid';
export const DOC_SIG = 'doc_sig';
export const DOC_SIG_KID = 'doc_sig_kid';
export const PAYLOAD_ENC = 'payload_enc';
export const ALG = 'A256GCM';

const KEY_LEN = 32;
const NONCE_LEN = 12;
const TAG_LEN = 16;
const SIG_HEX_LEN = 64;
const MAX_DEPTH = 100;
const HKDF_SALT = Buffer.from('bytemark-ticket-cache key ring v1');
const MAC_INFO = 'bytemark-ticket-cache hmac-sha256 v1';
const ENCRYPTION_INFO = 'bytemark-ticket-cache aes-256-gcm v1';
const PASS_LABEL = 'bytemark-ticket-cache pass';
const DOCUMENT_LABEL = 'bytemark-ticket-cache document';
const AD_LABEL = 'bytemark-ticket-cache payload';
const VERSION = 1;
const KEY_ID = /^[A-Za-z0-9._-]{1,32}$/;
const BASE64_KEY = /^[A-Za-z0-9+/]{43}=$/;

/** An error that never carries key material. */
export class KeyRingError extends Error {}

/** A payload that does not decrypt; `code` is the Rust `DecryptError::code()`. */
export class DecryptError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

// Key bytes live here, out of reach of the ring object, `util.inspect` and `JSON.stringify`.
const secrets = new WeakMap();

/** Key ids → derived keys, with the current id for writes. Printing a ring shows its ids only. */
export class KeyRing {
  /** From the key secret's JSON: `{"current": "k2", "keys": {"k1": "<base64 of 32 bytes>", ...}}`. */
  static fromSecretJson(text) {
    let secret;
    try {
      secret = JSON.parse(text);
    } catch {
      // The parser's message can quote the text, key material included.
      throw new KeyRingError('the key secret is not JSON');
    }
    if (!isPlainObject(secret) || !isPlainObject(secret.keys) || typeof secret.current !== 'string') {
      throw new KeyRingError('the key secret is not the documented JSON');
    }
    if (Object.keys(secret).some((name) => name !== 'current' && name !== 'keys')) {
      throw new KeyRingError('the key secret is not the documented JSON');
    }
    const keys = new Map();
    for (const [id, encoded] of Object.entries(secret.keys)) {
      if (!KEY_ID.test(id)) throw new KeyRingError('a key id must be 1 to 32 characters of A-Z a-z 0-9 . _ -');
      if (typeof encoded !== 'string' || !BASE64_KEY.test(encoded)) throw new KeyRingError(`key "${id}" is not 32 bytes of standard base64`);
      const master = Buffer.from(encoded, 'base64');
      if (master.length !== KEY_LEN || master.toString('base64') !== encoded) throw new KeyRingError(`key "${id}" is not 32 bytes of standard base64`);
      keys.set(id, derive(master, id));
      master.fill(0);
    }
    if (!KEY_ID.test(secret.current)) throw new KeyRingError('a key id must be 1 to 32 characters of A-Z a-z 0-9 . _ -');
    if (keys.size === 0) throw new KeyRingError('the key secret lists no keys');
    if (!keys.has(secret.current)) throw new KeyRingError(`the current key id "${secret.current}" is not listed in the key secret`);
    const ring = new KeyRing();
    secrets.set(ring, { current: secret.current, keys });
    return ring;
  }

  get currentId() {
    return secrets.get(this).current;
  }

  get ids() {
    return [...secrets.get(this).keys.keys()].sort();
  }

  has(id) {
    return secrets.get(this).keys.has(id);
  }

  toJSON() {
    return { current: this.currentId, ids: this.ids };
  }

  [Symbol.for('nodejs.util.inspect.custom')]() {
    return `KeyRing { current: ${JSON.stringify(this.currentId)}, ids: ${JSON.stringify(this.ids)} }`;
  }
}

function derive(master, id) {
  const info = (label) => Buffer.concat([Buffer.from(label), Buffer.from([0]), Buffer.from(id)]);
  return {
    mac: Buffer.from(hkdfSync('sha256', master, HKDF_SALT, info(MAC_INFO), KEY_LEN)),
    enc: Buffer.from(hkdfSync('sha256', master, HKDF_SALT, info(ENCRYPTION_INFO), KEY_LEN)),
  };
}

function keysOf(ring, id) {
  return secrets.get(ring)?.keys.get(id);
}

function isPlainObject(value) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * RFC 8785 canonical JSON of a value as JSON.parse or the driver (default options) returns it. Throws on
 * what has no exact JSON text, as the Rust writer refuses it: non-finite numbers, undefined, bigints,
 * BSON-only objects (Date, ObjectId, Long, Binary…), lone surrogates, nesting beyond 100 levels.
 */
export function canonicalize(value) {
  return write(value, 0);
}

function write(value, depth) {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError('a non-finite number has no exact JSON form');
      return JSON.stringify(value);
    case 'string':
      if (!value.isWellFormed()) throw new TypeError('a lone surrogate has no exact JSON form');
      return JSON.stringify(value);
    case 'object': {
      if (depth >= MAX_DEPTH) throw new TypeError(`nested deeper than ${MAX_DEPTH} levels`);
      if (Array.isArray(value)) return `[${value.map((item) => write(item, depth + 1)).join(',')}]`;
      if (!isPlainObject(value)) throw new TypeError('a BSON-only value has no exact JSON form');
      // Default sort order is by UTF-16 code units, as RFC 8785 orders members.
      const names = Object.keys(value).sort();
      return `{${names.map((name) => `${write(name, depth + 1)}:${write(value[name], depth + 1)}`).join(',')}}`;
    }
    default:
      throw new TypeError(`a ${typeof value} has no exact JSON form`);
  }
}

/** The bytes a signature is computed over: see domain/src/authenticity.rs. */
class Message {
  parts = [];

  constructor(label, kid, userId) {
    this.bytes(Buffer.from(label));
    this.byte(VERSION);
    this.bytes(Buffer.from(kid));
    this.bytes(Buffer.from(userIdText(userId)));
  }

  byte(value) {
    this.parts.push(Buffer.from([value]));
  }

  u32(value) {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(value);
    this.parts.push(length);
  }

  bytes(buffer) {
    this.u32(buffer.length);
    this.parts.push(buffer);
  }

  /** A field: absent when `undefined`, else the canonical text of the value (`null` included). */
  field(name, value) {
    this.bytes(Buffer.from(name));
    if (value === undefined) {
      this.byte(0);
    } else {
      this.byte(1);
      this.bytes(Buffer.from(canonicalize(value)));
    }
  }

  done() {
    return Buffer.concat(this.parts);
  }
}

function userIdText(userId) {
  if (!Number.isSafeInteger(userId) || userId < 1) throw new TypeError('user id must be a positive integer up to 2^53-1');
  return String(userId);
}

function checkArray(array) {
  if (array !== 'passes' && array !== 'passes4') throw new TypeError('array must be "passes" or "passes4"');
  return array;
}

/** A signature field as the document list and verdicts read it: null is absent. */
function stored(value) {
  return value === null ? undefined : value;
}

/**
 * The bytes a pass signature covers. `pass` is the stored pass; `payload` (default `pass.payload`) is the
 * plaintext payload, the decrypted one for a pass stored encrypted.
 */
export function passMessage(kid, { userId, array, pass, ...rest }) {
  const payload = 'payload' in rest ? rest.payload : pass.payload;
  const message = new Message(PASS_LABEL, kid, userId);
  message.bytes(Buffer.from(checkArray(array)));
  message.field('pass_uuid', pass.pass_uuid);
  message.field('timestamp', pass.timestamp);
  message.field('status', pass.status);
  message.field('free_ticket_status', pass.free_ticket_status);
  message.field('payload', payload);
  return message.done();
}

/** The bytes a document signature covers: `document` holds `timestamp`, `passes`, `passes4` as stored. */
export function documentMessage(kid, { userId, document }) {
  const message = new Message(DOCUMENT_LABEL, kid, userId);
  message.field('timestamp', document.timestamp);
  for (const name of ['passes', 'passes4']) {
    message.bytes(Buffer.from(name));
    const array = document[name];
    if (array === undefined || array === null) {
      message.byte(0);
    } else if (!Array.isArray(array)) {
      message.byte(2);
    } else {
      message.byte(1);
      message.u32(array.length);
      for (const item of array) {
        if (!isPlainObject(item)) {
          message.byte(0);
        } else {
          message.byte(1);
          message.field(PASS_SIG, stored(item[PASS_SIG]));
          message.field(PASS_SIG_KID, stored(item[PASS_SIG_KID]));
        }
      }
    }
  }
  return message.done();
}

function hmac(ring, kid, message) {
  return createHmac('sha256', keysOf(ring, kid).mac).update(message).digest();
}

/** Signs a pass with the current key: the fields to store, `{pass_sig, pass_sig_kid}`. */
export function signPass(ring, options) {
  const kid = ring.currentId;
  return { [PASS_SIG]: hmac(ring, kid, passMessage(kid, options)).toString('hex'), [PASS_SIG_KID]: kid };
}

/** Signs a document with the current key: the fields to store, `{doc_sig, doc_sig_kid}`. */
export function signDocument(ring, options) {
  const kid = ring.currentId;
  return { [DOC_SIG]: hmac(ring, kid, documentMessage(kid, options)).toString('hex'), [DOC_SIG_KID]: kid };
}

/**
 * A pass's verdict: `{verdict: 'authenticated'}`, `{verdict: 'unauthenticated'}` (no signature),
 * `{verdict: 'unknown_key', kid}` (reload the keys; still unknown, treat it as forged) or
 * `{verdict: 'forged', reason}`. Combine it with the document's verdict with `passInDocument`.
 */
export function verifyPass(ring, options) {
  const { pass } = options;
  return verify(ring, pass[PASS_SIG], pass[PASS_SIG_KID], (kid) => passMessage(kid, options));
}

/** A document's verdict: whether its signature lists exactly its stored passes, in order. */
export function verifyDocument(ring, { userId, document }) {
  return verify(ring, document[DOC_SIG], document[DOC_SIG_KID], (kid) => documentMessage(kid, { userId, document }));
}

function verify(ring, sig, kid, message) {
  sig = stored(sig);
  kid = stored(kid);
  if (sig === undefined && kid === undefined) return { verdict: 'unauthenticated' };
  if (sig === undefined) return forged('signature_missing');
  if (kid === undefined) return forged('key_id_missing');
  if (typeof sig !== 'string') return forged('signature_not_a_string');
  if (Buffer.byteLength(sig) !== SIG_HEX_LEN) return forged('wrong_length');
  if (!/^[0-9a-fA-F]*$/.test(sig)) return forged('not_hex');
  if (/[A-F]/.test(sig)) return forged('upper_case_hex');
  if (typeof kid !== 'string' || !KEY_ID.test(kid)) return forged('malformed_key_id');
  if (!ring.has(kid)) return { verdict: 'unknown_key', kid };
  let bytes;
  try {
    bytes = message(kid);
  } catch {
    return forged('no_exact_text');
  }
  const ok = timingSafeEqual(hmac(ring, kid, bytes), Buffer.from(sig, 'hex'));
  return ok ? { verdict: 'authenticated' } : forged('mismatch');
}

function forged(reason) {
  return { verdict: 'forged', reason };
}

/** A pass's verdict within its document's: authenticated only when both are. */
export function passInDocument(pass, document) {
  if (pass.verdict === 'forged' || pass.verdict === 'unknown_key') return pass;
  if (document.verdict === 'forged') return forged('not_listed');
  if (document.verdict === 'unknown_key') return document;
  if (pass.verdict === 'authenticated' && document.verdict === 'unauthenticated') return forged('document_unsigned');
  return pass;
}

/** The associated data binding a ciphertext to its place: see domain/src/encryption.rs. */
export function associatedData(kid, { userId, array, passUuid }) {
  const parts = [];
  const withLength = (bytes) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(bytes.length);
    parts.push(length, bytes);
  };
  withLength(Buffer.from(AD_LABEL));
  parts.push(Buffer.from([VERSION]));
  for (const part of [ALG, kid, userIdText(userId), checkArray(array), passUuid]) withLength(Buffer.from(part));
  return Buffer.concat(parts);
}

/**
 * Encrypts a payload's BSON bytes (e.g. `BSON.serialize(payload)` from the driver's `bson`) under the
 * current key with a fresh random nonce: the envelope to store in `payload_enc` (Buffers store as Binary).
 */
export function encryptPayload(ring, binding, plaintext) {
  const kid = ring.currentId;
  const nonce = randomBytes(NONCE_LEN);
  const cipher = createCipheriv('aes-256-gcm', keysOf(ring, kid).enc, nonce, { authTagLength: TAG_LEN });
  cipher.setAAD(associatedData(kid, binding));
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  return { alg: ALG, kid, nonce, ct };
}

/**
 * Decrypts a stored envelope (`nonce` and `ct` as Buffers, Uint8Arrays or the driver's Binary) to the
 * payload's BSON bytes; `BSON.deserialize` them. Throws a `DecryptError` whose `code` names the failure.
 */
export function decryptPayload(ring, binding, envelope) {
  if (envelope === null || typeof envelope !== 'object') throw new DecryptError('malformed', 'not an envelope');
  if (typeof envelope.alg !== 'string') throw new DecryptError('malformed', 'alg');
  if (typeof envelope.kid !== 'string') throw new DecryptError('malformed', 'kid');
  const nonce = binaryBytes(envelope.nonce);
  if (!nonce) throw new DecryptError('malformed', 'nonce');
  const ct = binaryBytes(envelope.ct);
  if (!ct) throw new DecryptError('malformed', 'ct');
  if (envelope.alg !== ALG) throw new DecryptError('unsupported_algorithm', 'the algorithm is not A256GCM');
  if (!KEY_ID.test(envelope.kid)) throw new DecryptError('malformed_key_id', 'the key id is malformed');
  if (nonce.length !== NONCE_LEN) throw new DecryptError('wrong_nonce_length', `the nonce has ${nonce.length} bytes`);
  if (ct.length < TAG_LEN) throw new DecryptError('truncated', `the ciphertext has ${ct.length} bytes`);
  const keys = keysOf(ring, envelope.kid);
  if (!keys) throw new DecryptError('unknown_key', `key ${envelope.kid} is not in the key ring`);
  const decipher = createDecipheriv('aes-256-gcm', keys.enc, nonce, { authTagLength: TAG_LEN });
  decipher.setAAD(associatedData(envelope.kid, binding));
  decipher.setAuthTag(ct.subarray(ct.length - TAG_LEN));
  let plaintext;
  try {
    plaintext = Buffer.concat([decipher.update(ct.subarray(0, ct.length - TAG_LEN)), decipher.final()]);
  } catch {
    throw new DecryptError('inauthentic', 'the encrypted payload does not authenticate');
  }
  if (plaintext.length < 5 || plaintext.readInt32LE(0) !== plaintext.length || plaintext[plaintext.length - 1] !== 0) {
    throw new DecryptError('not_a_document', 'the decrypted payload is not a BSON document');
  }
  return plaintext;
}

/** A generic binary's bytes: a Buffer or Uint8Array, or the driver's Binary (subtype 0). */
function binaryBytes(value) {
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (value && typeof value === 'object' && value.buffer instanceof Uint8Array && (value.sub_type ?? 0) === 0) {
    return Buffer.from(value.buffer.buffer, value.buffer.byteOffset, value.position ?? value.buffer.byteLength);
  }
  return undefined;
}
