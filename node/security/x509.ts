// A minimal X.509 issuer on Node's crypto (no openssl CLI, no dependency): ECDSA P-256 keys,
// certificates signed with ECDSA-with-SHA256, and exactly the extensions shardbank needs
// (RFC 5280): basicConstraints, keyUsage, extKeyUsage, subjectAltName (URI, DNS, IP), and the
// subject and authority key identifiers. Node verifies and parses X.509 (X509Certificate) but
// cannot create it; this writes the DER of a TBSCertificate by hand, signs it with
// crypto.sign, and reads back only what it must from an issuer certificate (its subject and
// key identifier), so that the issuer name of a leaf is byte-for-byte the CA's subject.
//
// The operator uses it in Kubernetes (its image has no openssl); test/security/x509.test.ts
// checks the output with Node, with `openssl x509`/`openssl verify`, and in a TLS handshake.
import { createHash, createPublicKey, generateKeyPairSync, randomBytes, sign, X509Certificate } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import net from 'node:net';

export interface SubjectAltNames {
  uris?: string[];
  dnsNames?: string[];
  ips?: string[];
}

export type ExtendedKeyUsage = 'serverAuth' | 'clientAuth';

export interface CertificateTemplate {
  commonName: string;
  organization?: string;
  notBefore: Date;
  notAfter: Date;
  /** A CA (basicConstraints CA:TRUE, keyCertSign and cRLSign) or a leaf (digitalSignature). */
  ca: boolean;
  extendedKeyUsage?: ExtendedKeyUsage[];
  subjectAltNames?: SubjectAltNames;
}

export interface Issuer {
  /** The issuer's certificate, PEM. */
  certPem: string;
  /** The issuer's private key, PEM (PKCS#8 or SEC1). */
  keyPem: string;
}

export interface IssuedCertificate {
  certPem: string;
  keyPem: string;
}

// ---------------------------------------------------------------------------------------
// DER writing

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, content: Buffer): Buffer {
  return Buffer.concat([Buffer.from([tag]), length(content.length), content]);
}

const sequence = (...items: Buffer[]) => tlv(0x30, Buffer.concat(items));
const set = (...items: Buffer[]) => tlv(0x31, Buffer.concat(items));
const octetString = (content: Buffer) => tlv(0x04, content);
const bitString = (content: Buffer, unusedBits = 0) => tlv(0x03, Buffer.concat([Buffer.from([unusedBits]), content]));
const utf8String = (text: string) => tlv(0x0c, Buffer.from(text, 'utf8'));
const booleanTrue = () => tlv(0x01, Buffer.from([0xff]));
const explicit = (n: number, content: Buffer) => tlv(0xa0 | n, content);

/** A DER INTEGER of non-negative big-endian bytes (a leading 0 keeps it positive). */
function integerBytes(bytes: Buffer): Buffer {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0 && (bytes[start + 1]! & 0x80) === 0) start += 1;
  const trimmed = bytes.subarray(start);
  return tlv(0x02, trimmed[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed);
}

/** A DER INTEGER from 0 to 127 (the version and pathLenConstraint). */
function smallInteger(n: number): Buffer {
  if (!Number.isInteger(n) || n < 0 || n > 127) throw new Error(`x509: small integer out of range: ${n}`);
  return tlv(0x02, Buffer.from([n]));
}

function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  const out: number[] = [40 * arcs[0]! + arcs[1]!];
  for (const arc of arcs.slice(2)) {
    const chunk: number[] = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

/** UTCTime through 2049, GeneralizedTime after (RFC 5280 4.1.2.5), whole seconds, UTC. */
function time(date: Date): Buffer {
  const iso = date.toISOString(); // 2026-12-01T18:44:28.123Z
  const digits = iso.slice(0, 19).replace(/[-:T]/g, '') + 'Z'; // 20261201184428Z
  const year = date.getUTCFullYear();
  if (year < 1950 || year > 9999) throw new Error(`x509: a validity date must be from 1950 to 9999, got ${iso}`);
  return year < 2050 ? tlv(0x17, Buffer.from(digits.slice(2), 'ascii')) : tlv(0x18, Buffer.from(digits, 'ascii'));
}

const OID = {
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

function name(template: { organization?: string; commonName: string }): Buffer {
  const rdn = (type: string, value: string) => set(sequence(oid(type), utf8String(value)));
  return sequence(
    ...(template.organization !== undefined ? [rdn(OID.organization, template.organization)] : []),
    rdn(OID.commonName, template.commonName),
  );
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return sequence(oid(id), ...(critical ? [booleanTrue()] : []), octetString(value));
}

/** keyUsage bits (0 digitalSignature, 5 keyCertSign, 6 cRLSign) as a DER BIT STRING. */
function keyUsageBits(bits: number[]): Buffer {
  const last = Math.max(...bits);
  const bytes = Buffer.alloc(Math.floor(last / 8) + 1);
  for (const bit of bits) bytes[Math.floor(bit / 8)]! |= 0x80 >> (bit % 8);
  return bitString(bytes, 7 - (last % 8));
}

function ipBytes(ip: string): Buffer {
  const family = net.isIP(ip);
  if (family === 4) return Buffer.from(ip.split('.').map(Number));
  if (family !== 6) throw new Error(`x509: ${JSON.stringify(ip)} is not an IP address`);
  let text = ip;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = ipBytes(v4[1]!);
    text = text.slice(0, -v4[1]!.length) + `${b.readUInt16BE(0).toString(16)}:${b.readUInt16BE(2).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const groups = (part: string | undefined) => (part ? part.split(':') : []);
  const left = groups(head);
  const right = groups(tail);
  const all =
    tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  const out = Buffer.alloc(16);
  all.forEach((group, i) => out.writeUInt16BE(parseInt(group, 16), i * 2));
  return out;
}

function generalNames(san: SubjectAltNames): Buffer {
  const ascii = (kind: string, text: string) => {
    if (!/^[\x21-\x7e]+$/.test(text))
      throw new Error(`x509: SAN ${kind} ${JSON.stringify(text)} must be printable ASCII`);
    return Buffer.from(text, 'ascii');
  };
  return sequence(
    ...(san.uris ?? []).map((uri) => tlv(0x86, ascii('URI', uri))),
    ...(san.dnsNames ?? []).map((dns) => tlv(0x82, ascii('DNS', dns))),
    ...(san.ips ?? []).map((ip) => tlv(0x87, ipBytes(ip))),
  );
}

// ---------------------------------------------------------------------------------------
// DER reading (just enough of a certificate and a SubjectPublicKeyInfo)

interface Element {
  tag: number;
  /** The whole element, header included. */
  raw: Buffer;
  content: Buffer;
}

function read(buffer: Buffer, offset = 0): Element {
  const tag = buffer[offset];
  const first = buffer[offset + 1];
  if (tag === undefined || first === undefined) throw new Error('x509: truncated DER');
  let size = first;
  let header = 2;
  if (first & 0x80) {
    const count = first & 0x7f;
    if (count === 0 || count > 4) throw new Error('x509: unsupported DER length');
    size = 0;
    for (let i = 0; i < count; i += 1) size = size * 256 + buffer[offset + 2 + i]!;
    header += count;
  }
  if (offset + header + size > buffer.length) throw new Error('x509: truncated DER');
  return {
    tag,
    raw: buffer.subarray(offset, offset + header + size),
    content: buffer.subarray(offset + header, offset + header + size),
  };
}

function children(content: Buffer): Element[] {
  const out: Element[] = [];
  for (let offset = 0; offset < content.length;) {
    const element = read(content, offset);
    out.push(element);
    offset += element.raw.length;
  }
  return out;
}

/** SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2, method 1). */
function keyIdentifier(spkiDer: Buffer): Buffer {
  const [, bits] = children(read(spkiDer).content);
  if (!bits || bits.tag !== 0x03) throw new Error('x509: not a SubjectPublicKeyInfo');
  return createHash('sha1').update(bits.content.subarray(1)).digest();
}

/** The issuer's subject Name (as DER) and its key identifier. */
function issuerFields(certDer: Buffer): { subject: Buffer; keyId: Buffer } {
  const [tbs] = children(read(certDer).content);
  if (!tbs) throw new Error('x509: not a certificate');
  const fields = children(tbs.content);
  const offset = fields[0]?.tag === 0xa0 ? 1 : 0;
  const subject = fields[offset + 4];
  const spki = fields[offset + 5];
  if (!subject || !spki) throw new Error('x509: not a certificate');
  let keyId = keyIdentifier(spki.raw);
  const extensions = fields.find((f) => f.tag === 0xa3);
  if (extensions) {
    for (const ext of children(read(extensions.content).content)) {
      const parts = children(ext.content);
      if (parts[0]!.raw.equals(oid(OID.subjectKeyIdentifier))) keyId = read(parts[parts.length - 1]!.content).content;
    }
  }
  return { subject: subject.raw, keyId };
}

// ---------------------------------------------------------------------------------------
// Issuing

function pem(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** A random positive 128-bit serial (RFC 5280: at most 20 octets, unique per CA). */
function serial(): Buffer {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return bytes;
}

/** A new ECDSA P-256 key pair; the private key as PKCS#8 PEM. */
export function generateEcKey(): { privateKey: KeyObject; publicKey: KeyObject; keyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return { privateKey, publicKey, keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
}

/**
 * A certificate for `publicKey` made from `template`, signed by `issuer` (self-signed with
 * `selfKey` when there is no issuer). Returns the certificate as PEM.
 */
export function signCertificate(
  template: CertificateTemplate,
  publicKey: KeyObject,
  signer: { issuer: Issuer } | { selfKey: KeyObject },
): string {
  if (!(template.notAfter > template.notBefore)) throw new Error('x509: notAfter must be after notBefore');
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const subjectKeyId = keyIdentifier(spki);
  const subject = name(template);
  let issuerName: Buffer;
  let authorityKeyId: Buffer;
  let signingKey: KeyObject | string;
  if ('issuer' in signer) {
    const issuerCert = new X509Certificate(signer.issuer.certPem);
    if (!issuerCert.ca) throw new Error('x509: the issuer certificate is not a CA');
    const fields = issuerFields(issuerCert.raw);
    issuerName = fields.subject;
    authorityKeyId = fields.keyId;
    signingKey = signer.issuer.keyPem;
    if (!createPublicKey(signer.issuer.keyPem).equals(issuerCert.publicKey))
      throw new Error("x509: the issuer key does not match the issuer certificate's public key");
  } else {
    issuerName = subject;
    authorityKeyId = subjectKeyId;
    signingKey = signer.selfKey;
  }
  const extensions = [
    extension(OID.basicConstraints, true, template.ca ? sequence(booleanTrue(), smallInteger(0)) : sequence()),
    extension(OID.keyUsage, true, keyUsageBits(template.ca ? [5, 6] : [0])),
  ];
  if (template.extendedKeyUsage && template.extendedKeyUsage.length > 0) {
    extensions.push(extension(OID.extKeyUsage, false, sequence(...template.extendedKeyUsage.map((u) => oid(OID[u])))));
  }
  const san = template.subjectAltNames ?? {};
  if ((san.uris?.length ?? 0) + (san.dnsNames?.length ?? 0) + (san.ips?.length ?? 0) > 0) {
    extensions.push(extension(OID.subjectAltName, false, generalNames(san)));
  }
  extensions.push(extension(OID.subjectKeyIdentifier, false, octetString(subjectKeyId)));
  extensions.push(extension(OID.authorityKeyIdentifier, false, sequence(tlv(0x80, authorityKeyId))));
  const algorithm = sequence(oid(OID.ecdsaWithSha256));
  const tbs = sequence(
    explicit(0, smallInteger(2)),
    integerBytes(serial()),
    algorithm,
    issuerName,
    sequence(time(template.notBefore), time(template.notAfter)),
    subject,
    spki,
    explicit(3, sequence(...extensions)),
  );
  const signature = sign('sha256', tbs, signingKey);
  return pem('CERTIFICATE', sequence(tbs, algorithm, bitString(signature)));
}

/** A self-signed CA valid from now (minus a minute of clock skew) for `days`. */
export function createCa(commonName: string, options: { days: number; now?: Date }): IssuedCertificate {
  const now = options.now ?? new Date();
  const key = generateEcKey();
  const certPem = signCertificate(
    {
      commonName,
      organization: 'shardbank',
      notBefore: new Date(now.getTime() - 60_000),
      notAfter: new Date(now.getTime() + options.days * 86_400_000),
      ca: true,
    },
    key.publicKey,
    { selfKey: key.privateKey },
  );
  return { certPem, keyPem: key.keyPem };
}

export interface LeafOptions {
  commonName: string;
  subjectAltNames: SubjectAltNames;
  /** A TLS server too (serverAuth and clientAuth); otherwise a client (clientAuth). */
  server: boolean;
  /** Lifetime in milliseconds from now (a minute of clock skew is added before now). */
  lifetimeMs: number;
  now?: Date;
  /** An explicit validity window instead (tests: an expired or not yet valid certificate). */
  validity?: { notBefore: Date; notAfter: Date };
}

/** A new key and a leaf certificate for it, signed by `issuer`. */
export function issueLeafCertificate(issuer: Issuer, options: LeafOptions): IssuedCertificate {
  const now = options.now ?? new Date();
  const key = generateEcKey();
  const certPem = signCertificate(
    {
      commonName: options.commonName,
      organization: 'shardbank',
      notBefore: options.validity?.notBefore ?? new Date(now.getTime() - 60_000),
      notAfter: options.validity?.notAfter ?? new Date(now.getTime() + options.lifetimeMs),
      ca: false,
      extendedKeyUsage: options.server ? ['serverAuth', 'clientAuth'] : ['clientAuth'],
      subjectAltNames: options.subjectAltNames,
    },
    key.publicKey,
    { issuer },
  );
  return { certPem, keyPem: key.keyPem };
}

/** The certificates of a PEM bundle (a CA file may hold more than one during rotation). */
export function parseCertificates(bundle: string): X509Certificate[] {
  const blocks = bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((block) => new X509Certificate(block));
}
