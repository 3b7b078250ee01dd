// Identities in certificates (docs/SECURITY.md): one SAN URI each,
//   shardbank://<namespace>/<cluster>/shard/<s>/replica/<o>   a replica
//   shardbank://<namespace>/<cluster>/client/<role>/<name>    a client (role: read | transfer | admin)
// and the rules a replica applies to a peer connection's identity and the frames it sends.
import type { PeerFrame } from '../gen/shardbank/v1/peer.js';
import { MEMBERS_MAX } from '../paxos/membership.js';

/** read: balances and status; transfer: also moves money; admin: reads and changes membership (no transfers). */
export const CLIENT_ROLES = ['read', 'transfer', 'admin'] as const;
export type ClientRole = (typeof CLIENT_ROLES)[number];

/**
 * Replica slots a certificate may name: a slot is a place in the peer table (a pod ordinal),
 * and a shard never has more members than MEMBERS_MAX, so never more slots in use at once.
 */
export const REPLICA_SLOTS_MAX = MEMBERS_MAX;

export interface ReplicaIdentity {
  namespace: string;
  cluster: string;
  shard: number;
  ordinal: number;
}

export interface ClientIdentity {
  namespace: string;
  cluster: string;
  role: ClientRole;
  name: string;
}

export type Identity = ({ kind: 'replica' } & ReplicaIdentity) | ({ kind: 'client' } & ClientIdentity);

const SCHEME = 'shardbank://';
/** Namespaces and cluster names are Kubernetes names; client names the same alphabet. */
const NAME = /^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$/;

export function replicaIdentityUri(identity: ReplicaIdentity): string {
  return `${SCHEME}${identity.namespace}/${identity.cluster}/shard/${identity.shard}/replica/${identity.ordinal}`;
}

export function clientIdentityUri(identity: ClientIdentity): string {
  return `${SCHEME}${identity.namespace}/${identity.cluster}/client/${identity.role}/${identity.name}`;
}

/** The identity a SAN URI names, or undefined if it is not a shardbank identity. */
export function parseIdentityUri(uri: string): Identity | undefined {
  if (!uri.startsWith(SCHEME)) return undefined;
  const parts = uri.slice(SCHEME.length).split('/');
  const [namespace, cluster] = parts;
  if (namespace === undefined || cluster === undefined || !NAME.test(namespace) || !NAME.test(cluster))
    return undefined;
  if (parts.length === 6 && parts[2] === 'shard' && parts[4] === 'replica') {
    const shard = decimal(parts[3]!);
    const ordinal = decimal(parts[5]!);
    if (shard === undefined || ordinal === undefined) return undefined;
    return { kind: 'replica', namespace, cluster, shard, ordinal };
  }
  if (parts.length === 5 && parts[2] === 'client') {
    const role = parts[3];
    const name = parts[4]!;
    if (!(CLIENT_ROLES as readonly string[]).includes(role ?? '') || !NAME.test(name)) return undefined;
    return { kind: 'client', namespace, cluster, role: role as ClientRole, name };
  }
  return undefined;
}

function decimal(text: string): number | undefined {
  return /^(0|[1-9][0-9]{0,3})$/.test(text) ? Number(text) : undefined;
}

/** The URIs of a certificate's subjectAltName as Node prints it ("URI:a, IP Address:b"). */
export function sanUris(subjectAltName: string | undefined): string[] {
  if (!subjectAltName) return [];
  return subjectAltName
    .split(', ')
    .filter((entry) => entry.startsWith('URI:'))
    .map((entry) => entry.slice(4));
}

/** The certificate's shardbank identities (a certificate should carry exactly one). */
export function identitiesOf(subjectAltName: string | undefined): Identity[] {
  return sanUris(subjectAltName)
    .map(parseIdentityUri)
    .filter((identity): identity is Identity => identity !== undefined);
}

export interface PeerPolicy {
  namespace: string;
  cluster: string;
  shards: number;
  replicasPerShard: number;
}

/**
 * The replica identity of a peer certificate if it is a member of this cluster's topology;
 * otherwise why not (the caller logs it and closes the connection).
 */
export function authorizePeer(
  subjectAltName: string | undefined,
  policy: PeerPolicy,
): { identity: ReplicaIdentity } | { refused: string } {
  const identities = identitiesOf(subjectAltName);
  if (identities.length !== 1)
    return { refused: `the certificate names ${identities.length} shardbank identities, expected one` };
  const identity = identities[0]!;
  if (identity.kind !== 'replica') return { refused: 'the certificate names a client, not a replica' };
  if (identity.namespace !== policy.namespace || identity.cluster !== policy.cluster)
    return {
      refused: `the certificate names cluster ${identity.namespace}/${identity.cluster}, this replica belongs to ${policy.namespace}/${policy.cluster}`,
    };
  if (identity.shard >= policy.shards)
    return { refused: `the certificate names shard ${identity.shard}, the cluster has ${policy.shards}` };
  // Not the shard's current size: a shard grows (a new member's pod has the next slot) and
  // shrinks while its members keep running (docs/SECURITY.md, "Membership").
  if (identity.ordinal >= REPLICA_SLOTS_MAX)
    return {
      refused: `the certificate names replica slot ${identity.ordinal}, slots are below ${REPLICA_SLOTS_MAX}`,
    };
  return { identity };
}

/**
 * Whether an authenticated peer may send this frame to a replica of `selfShard`; undefined if
 * so, otherwise why not. A frame speaks for its sender only: the sender fields must be the
 * connection's identity (its slot), Paxos messages come only from the shard's own replicas, and
 * 2PC messages name their sender, except those a follower of this shard passes on (forwarded).
 * A Paxos message's member id (`from`) is not tied to the slot: a replica of the shard may
 * speak as any member (docs/SECURITY.md, "Membership": the protocol tolerates crashes, not
 * lies, and a replica of the shard that lied could already do so as itself).
 */
export function frameRefusal(frame: PeerFrame, peer: ReplicaIdentity, selfShard: number): string | undefined {
  if (frame.senderShard !== peer.shard || frame.senderOrdinal !== peer.ordinal)
    return `the frame claims to come from shard ${frame.senderShard} replica ${frame.senderOrdinal}`;
  if (frame.paxos.length > 0 && peer.shard !== selfShard)
    return `Paxos messages from shard ${peer.shard}, this replica is in shard ${selfShard}`;
  if (frame.forwarded) {
    if (peer.shard !== selfShard) return `forwarded 2PC messages from shard ${peer.shard}`;
    return undefined;
  }
  for (const message of frame.tx) {
    if (message.fromShard !== peer.shard || message.fromOrdinal !== peer.ordinal)
      return `a 2PC message claims to come from shard ${message.fromShard} replica ${message.fromOrdinal}`;
  }
  return undefined;
}
