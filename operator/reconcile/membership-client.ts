// The operator's calls to a shard's replicas for membership (issue 19): GetMembership and
// ChangeMembership of the Membership service, and ClusterStatus (which replica says it lost
// its disk), over TLS with an `admin` client certificate (operator/reconcile/certificates.ts
// issues it in memory from the cluster CA). A change goes to the leader; a replica that is not
// the leader answers ok=false naming it, and the call is made once more there.
import { credentials, Metadata, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import type { BankCluster } from '../../node/cluster/bankcluster.js';
import {
  BankClient,
  MembershipClient,
  type ChangeMembershipRequest,
  type ClusterStatusReply,
  type MembershipReply,
} from '../../node/gen/shardbank/v1/bank.js';
import { namespaceOf } from '../builders/labels.js';
import type { MembershipChange, MembershipView } from './membership-plan.js';

/** PEM files of the operator's admin identity for one cluster. */
export interface AdminCredentials {
  ca: string;
  cert: string;
  key: string;
}

export interface MembershipRead {
  view: MembershipView;
  /**
   * Peer addresses whose replicas say they are no member (member_role none): at the address of
   * a voter, a replica that lost its disk and waits to be replaced by a new member.
   */
  emptyReplicas: string[];
  /** The address that answered. */
  from: string;
}

export type ChangeOutcome = { ok: true; view: MembershipView } | { ok: false; error: string };

/** What the membership driver needs from the replicas (a test gives a scripted one). */
export interface MembershipApi {
  /** The shard's membership, asked of `addresses` in order until one answers; undefined if none does. */
  read(cluster: BankCluster, shard: number, addresses: string[]): Promise<MembershipRead | undefined>;
  /** One change, sent to `addresses[0]` (the leader as far as known), then to the leader it names. */
  change(
    cluster: BankCluster,
    shard: number,
    addresses: string[],
    expectedConfigurationSlot: number,
    change: MembershipChange,
  ): Promise<ChangeOutcome>;
  close(): void;
}

const READ_TIMEOUT_MS = 3_000;
/** A change is answered once chosen: a loaded shard may take a while (a timeout is a retry after a re-read). */
const CHANGE_TIMEOUT_MS = 20_000;

function viewOf(reply: MembershipReply): MembershipView {
  return {
    members: reply.members.map((m) => ({ id: m.id, address: m.address, voter: m.voter, caughtUp: m.caughtUp })),
    nextMemberId: reply.nextMemberId,
    configurationSlot: reply.configurationSlot,
    changeInFlight: reply.changeInFlight,
    leaderId: reply.leaderId,
  };
}

function unary<Req, Rep>(
  stub: object,
  method: string,
  request: Req,
  timeoutMs = READ_TIMEOUT_MS,
): Promise<{ ok: true; value: Rep } | { ok: false; error: string }> {
  return new Promise((resolve) => {
    const fn = (stub as Record<string, unknown>)[method] as (
      r: Req,
      m: Metadata,
      o: { deadline: number },
      cb: (e: ServiceError | null, v: Rep) => void,
    ) => void;
    try {
      fn.call(stub, request, new Metadata(), { deadline: Date.now() + timeoutMs }, (error, value) =>
        resolve(error ? { ok: false, error: `${error.code}: ${error.details || error.message}` } : { ok: true, value }),
      );
    } catch (error) {
      resolve({ ok: false, error: (error as Error).message });
    }
  });
}

export function changeRequest(
  cluster: BankCluster,
  shard: number,
  expectedConfigurationSlot: number,
  change: MembershipChange,
): ChangeMembershipRequest {
  const base = { cluster: cluster.metadata.name, shard, expectedConfigurationSlot };
  switch (change.type) {
    case 'add-learner':
      return { ...base, change: { $case: 'addLearner', addLearner: { address: change.address } } };
    case 'promote':
      return { ...base, change: { $case: 'promote', promote: change.member } };
    case 'demote':
      return { ...base, change: { $case: 'demote', demote: change.member } };
    case 'remove':
      return { ...base, change: { $case: 'remove', remove: change.member } };
  }
}

/**
 * gRPC implementation. `credentialsOf` gives the admin identity of a cluster (undefined: none
 * yet, nothing is called). Channels are kept per address and identity and closed on close().
 */
export class GrpcMembershipApi implements MembershipApi {
  private readonly channels = new Map<string, { cert: string; membership: MembershipClient; bank: BankClient }>();

  constructor(
    private readonly credentialsOf: (cluster: BankCluster) => AdminCredentials | undefined,
    private readonly dial: (address: string) => string = (address) => address,
  ) {}

  private stubs(cluster: BankCluster, address: string) {
    const admin = this.credentialsOf(cluster);
    if (!admin) return undefined;
    const key = `${namespaceOf(cluster)}/${cluster.metadata.name}|${address}`;
    let stubs = this.channels.get(key);
    if (stubs && stubs.cert !== admin.cert) {
      // A renewed identity: a new channel with it.
      stubs.membership.close();
      stubs.bank.close();
      stubs = undefined;
    }
    if (!stubs) {
      const creds: ChannelCredentials = credentials.createSsl(
        Buffer.from(admin.ca),
        Buffer.from(admin.key),
        Buffer.from(admin.cert),
      );
      // The replica's certificate names its pod's DNS names (the address's host).
      const host = address.replace(/:\d+$/, '');
      const options = { 'grpc.ssl_target_name_override': host, 'grpc.default_authority': host };
      const target = this.dial(address);
      stubs = {
        cert: admin.cert,
        membership: new MembershipClient(target, creds, options),
        bank: new BankClient(target, creds, options),
      };
      this.channels.set(key, stubs);
    }
    return stubs;
  }

  async read(cluster: BankCluster, shard: number, addresses: string[]): Promise<MembershipRead | undefined> {
    for (const address of addresses) {
      const stubs = this.stubs(cluster, address);
      if (!stubs) return undefined;
      const reply = await unary<unknown, MembershipReply>(stubs.membership, 'getMembership', {
        cluster: cluster.metadata.name,
        shard,
      });
      if (!reply.ok) continue;
      const view = viewOf(reply.value);
      return { view, emptyReplicas: await this.emptyReplicas(stubs.bank, cluster, shard), from: address };
    }
    return undefined;
  }

  /**
   * Replicas of the shard that say they are no member. Not those rebuilding (voting
   * rebuilding/probing) as the member they were: the disk-loss path of the Safety issue brings
   * such a replica back as itself, and a new member at its address would never catch up.
   */
  private async emptyReplicas(bank: BankClient, cluster: BankCluster, shard: number): Promise<string[]> {
    const reply = await unary<unknown, ClusterStatusReply>(bank, 'clusterStatus', { cluster: cluster.metadata.name });
    if (!reply.ok) return [];
    const replicas = reply.value.shards.find((s) => s.shard === shard)?.replicas ?? [];
    return replicas.filter((r) => r.memberRole === 'none').map((r) => r.address);
  }

  async change(
    cluster: BankCluster,
    shard: number,
    addresses: string[],
    expectedConfigurationSlot: number,
    change: MembershipChange,
  ): Promise<ChangeOutcome> {
    const request = changeRequest(cluster, shard, expectedConfigurationSlot, change);
    const tried = new Set<string>();
    let target: string | undefined = addresses[0];
    let lastError = 'no replica to ask';
    while (target !== undefined) {
      tried.add(target);
      const stubs = this.stubs(cluster, target);
      if (!stubs) return { ok: false, error: 'no admin credentials for this cluster yet' };
      const reply = await unary<ChangeMembershipRequest, MembershipReply>(
        stubs.membership,
        'changeMembership',
        request,
        CHANGE_TIMEOUT_MS,
      );
      if (reply.ok && reply.value.ok) return { ok: true, view: viewOf(reply.value) };
      if (reply.ok) {
        // Refused: by the leader (the rule it names), or by a follower naming the leader.
        lastError = reply.value.error || 'refused';
        const leader = reply.value.leaderAddress;
        target = leader !== '' && !tried.has(leader) ? leader : undefined;
      } else {
        // Unreachable: the next replica (it names the leader if it is not).
        lastError = reply.error;
        target = addresses.find((a) => !tried.has(a));
      }
    }
    return { ok: false, error: lastError };
  }

  close(): void {
    for (const stubs of this.channels.values()) {
      stubs.membership.close();
      stubs.bank.close();
    }
    this.channels.clear();
  }
}
