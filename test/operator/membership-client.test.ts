// The operator's gRPC membership client (operator/reconcile/membership-client.ts) against
// scripted replicas: real grpc-js servers on loopback with mutual TLS from node/security/x509
// (each replica certificate names its pod's DNS name, the client dials loopback and checks
// that name), implementing the generated Membership and Bank services. The replica side's real
// service is another branch: this pins the client's half of the contract.
import { X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Server, ServerCredentials, status, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js';
import { defaultBankCluster, type BankCluster } from '../../node/cluster/bankcluster.js';
import {
  BankService,
  MembershipService,
  type ChangeMembershipRequest,
  MembershipReply,
  ReplicaStatus,
  type ClusterStatusReply,
} from '../../node/gen/shardbank/v1/bank.js';
import { createCa, issueLeafCertificate } from '../../node/security/x509.js';
import { sanUris } from '../../node/security/identity.js';
import { adminUri } from '../../operator/reconcile/certificates.js';
import { GrpcMembershipApi } from '../../operator/reconcile/membership-client.js';

const cluster: BankCluster = (() => {
  const c = defaultBankCluster('demo');
  c.metadata = { name: 'demo', namespace: 'grow', uid: 'u-1' };
  return c;
})();
const host = (o: number) => `demo-s0-${o}.demo-s0.grow.svc`;
const address = (o: number) => `${host(o)}:50051`;

const ca = createCa('test CA', { days: 1 });
const admin = issueLeafCertificate(ca, {
  commonName: 'operator',
  subjectAltNames: { uris: [adminUri(cluster)], dnsNames: [], ips: [] },
  server: false,
  lifetimeMs: 3_600_000,
});

interface Scripted {
  server: Server;
  port: number;
  calls: { method: string; request: unknown; clientUris: string[] }[];
}

const LEADER = 1;
const replicas: Scripted[] = [];

// fromPartial: the generated messages grow fields (the replica side adds some); defaults for those.
function membershipReply(over: Partial<MembershipReply> = {}): MembershipReply {
  return MembershipReply.fromPartial({
    ok: true,
    error: '',
    leaderId: LEADER,
    leaderAddress: address(LEADER),
    members: [0, 1, 2].map((id) => ({ id, address: address(id), voter: true, caughtUp: id !== 2, commitIndex: 10 })),
    nextMemberId: 3,
    configurationSlot: 0,
    changeInFlight: false,
    commitIndex: 10,
    proposedSlot: 0,
    ...over,
  });
}

async function startReplica(ordinal: number): Promise<Scripted> {
  const leaf = issueLeafCertificate(ca, {
    commonName: host(ordinal),
    subjectAltNames: { uris: [], dnsNames: [host(ordinal)], ips: [] },
    server: true,
    lifetimeMs: 3_600_000,
  });
  const server = new Server();
  const calls: Scripted['calls'] = [];
  const record = (method: string, call: ServerUnaryCall<unknown, unknown>) => {
    const peer = call.getAuthContext().sslPeerCertificate;
    const uris = peer ? sanUris(new X509Certificate(peer.raw).subjectAltName) : [];
    calls.push({ method, request: call.request, clientUris: uris });
  };
  server.addService(MembershipService, {
    getMembership: (call: ServerUnaryCall<unknown, MembershipReply>, cb: sendUnaryData<MembershipReply>) => {
      record('getMembership', call);
      cb(null, membershipReply());
    },
    changeMembership: (
      call: ServerUnaryCall<ChangeMembershipRequest, MembershipReply>,
      cb: sendUnaryData<MembershipReply>,
    ) => {
      record('changeMembership', call);
      if (ordinal !== LEADER) cb(null, membershipReply({ ok: false, error: 'not the leader' }));
      else if (call.request.expectedConfigurationSlot !== 0)
        cb(null, membershipReply({ ok: false, error: 'configuration slot is 0' }));
      else cb(null, membershipReply({ configurationSlot: 77, changeInFlight: true, proposedSlot: 77 }));
    },
  });
  const unimplemented = (_call: unknown, cb: sendUnaryData<unknown>) =>
    cb({ code: status.UNIMPLEMENTED, details: 'scripted' } as never, null);
  server.addService(BankService, {
    openSession: unimplemented,
    transfer: unimplemented,
    batchTransfer: unimplemented,
    transferStream: () => undefined,
    getBalance: unimplemented,
    clusterStatus: (call: ServerUnaryCall<unknown, ClusterStatusReply>, cb: sendUnaryData<ClusterStatusReply>) => {
      record('clusterStatus', call);
      const replica = (o: number, voting: string, memberRole: string) =>
        ReplicaStatus.fromPartial({
          shard: 0,
          ordinal: o,
          role: 'follower',
          ready: voting === 'voter',
          address: address(o),
          commitIndex: 0,
          appliedIndex: 0,
          ballot: { round: 0, ordinal: 0 },
          leaderOrdinal: LEADER,
          inflightTransactions: 0,
          pid: 1,
          snapshotIndex: 0,
          shardTotal: 0,
          voting,
          memberRole,
        });
      cb(null, {
        cluster: 'demo',
        shards: [
          {
            shard: 0,
            firstItem: 1,
            lastItem: 10,
            leaderOrdinal: LEADER,
            leaderBallot: { round: 1, ordinal: LEADER },
            leaderAddress: address(LEADER),
            // 0 rebuilds as itself (the disk-loss path): not to be replaced; 2 says it is no member.
            replicas: [replica(0, 'rebuilding', 'voter'), replica(1, 'voter', 'voter'), replica(2, 'probing', 'none')],
            inflightTransactions: 0,
            voters: [0, 1, 2],
            learners: [],
            membershipChangeInFlight: false,
          },
        ],
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      '127.0.0.1:0',
      ServerCredentials.createSsl(
        Buffer.from(ca.certPem),
        [{ private_key: Buffer.from(leaf.keyPem), cert_chain: Buffer.from(leaf.certPem) }],
        true,
      ),
      (err, p) => (err ? reject(err) : resolve(p)),
    ),
  );
  return { server, port, calls };
}

let api: GrpcMembershipApi;
let closedPort = 1;

beforeAll(async () => {
  for (const o of [0, 1, 2]) replicas.push(await startReplica(o));
  // A port nothing listens on: pod 0 "down" for the read test.
  const probe = await startReplica(9);
  closedPort = probe.port;
  probe.server.forceShutdown();
  api = new GrpcMembershipApi(
    () => ({ ca: ca.certPem, cert: admin.certPem, key: admin.keyPem }),
    (a) => {
      const o = Number(/^demo-s0-(\d+)\./.exec(a)![1]);
      return `127.0.0.1:${o === 7 ? closedPort : replicas[o]!.port}`;
    },
  );
});

afterAll(() => {
  api?.close();
  for (const r of replicas) r.server.forceShutdown();
});

describe('GrpcMembershipApi', () => {
  it('reads the membership from the first replica that answers, over mutual TLS with the admin identity, and finds the replica that is no member', async () => {
    const read = await api.read(cluster, 0, ['demo-s0-7.demo-s0.grow.svc:50051', address(2), address(0)]);
    expect(read).toBeDefined();
    expect(read!.from).toBe(address(2));
    expect(read!.view).toEqual({
      members: [
        { id: 0, address: address(0), voter: true, caughtUp: true },
        { id: 1, address: address(1), voter: true, caughtUp: true },
        { id: 2, address: address(2), voter: true, caughtUp: false },
      ],
      nextMemberId: 3,
      configurationSlot: 0,
      changeInFlight: false,
      leaderId: LEADER,
    });
    expect(read!.emptyReplicas).toEqual([address(2)]);
    const calls = replicas[2]!.calls;
    expect(calls.map((c) => c.method)).toEqual(['getMembership', 'clusterStatus']);
    expect(calls[0]!.request).toEqual({ cluster: 'demo', shard: 0 });
    expect(calls[0]!.clientUris).toEqual(['shardbank://grow/demo/client/admin/operator']);
  });

  it('sends a change to a follower, follows the leader it names, and sends the compare-and-set slot', async () => {
    const outcome = await api.change(cluster, 0, [address(0), address(2)], 0, {
      type: 'add-learner',
      address: address(3),
      ordinal: 3,
    });
    expect(outcome).toMatchObject({ ok: true, view: { configurationSlot: 77, changeInFlight: true } });
    const sent = replicas[1]!.calls.filter((c) => c.method === 'changeMembership');
    expect(sent.map((c) => c.request)).toEqual([
      {
        cluster: 'demo',
        shard: 0,
        expectedConfigurationSlot: 0,
        change: { $case: 'addLearner', addLearner: { address: address(3) } },
      },
    ]);
    expect(replicas[0]!.calls.filter((c) => c.method === 'changeMembership')).toHaveLength(1);
  });

  it("returns the leader's refusal (a stale compare-and-set) without asking anyone else", async () => {
    const before = replicas.map((r) => r.calls.length);
    const outcome = await api.change(cluster, 0, [address(1), address(0)], 5, {
      type: 'promote',
      member: 3,
      ordinal: 3,
    });
    expect(outcome).toEqual({ ok: false, error: 'configuration slot is 0' });
    expect(replicas.map((r, i) => r.calls.length - before[i]!)).toEqual([0, 1, 0]);
  });

  it('says when no replica answers', async () => {
    expect(await api.read(cluster, 0, ['demo-s0-7.demo-s0.grow.svc:50051'])).toBeUndefined();
    const outcome = await api.change(cluster, 0, ['demo-s0-7.demo-s0.grow.svc:50051'], 0, {
      type: 'remove',
      member: 2,
      ordinal: 2,
    });
    expect(outcome.ok).toBe(false);
  });
});
