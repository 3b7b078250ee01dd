// Drives a shard's membership one step at a time through the Membership service (docs/
// ARCHITECTURE.md, "Membership"): grow by a learner that catches up and is promoted, shrink
// by demoting and removing a voter. Every step re-reads the leader's view and names the
// configuration it applies to (compare-and-set), so a rerun continues where a stopped one
// left off and a retried step is never applied twice. Used by `shardbank up -f` and tests.
import * as grpc from '@grpc/grpc-js';
import {
  MembershipClient,
  type ChangeMembershipRequest,
  type MemberView,
  type MembershipReply,
} from '../gen/shardbank/v1/bank.js';

/** The two calls, by replica address (throwing when it does not answer). */
export interface MembershipCalls {
  get(address: string, shard: number): Promise<MembershipReply>;
  change(address: string, request: ChangeMembershipRequest): Promise<MembershipReply>;
  close?(): void;
}

export interface DriverContext {
  cluster: string;
  shard: number;
  /** Replica addresses of the shard to ask first (members found in replies are asked too). */
  addresses: readonly string[];
  calls: MembershipCalls;
  log: (line: string) => void;
  /** Per step (default 120 s). */
  stepTimeoutMs?: number;
}

export interface StepTiming {
  step: string;
  ms: number;
}

const POLL_MS = 200;
const CALL_DEADLINE_MS = 12_000;

/** Membership calls over gRPC (an admin client certificate with TLS; plaintext for --insecure clusters). */
export function grpcMembershipCalls(
  cluster: string,
  credentials: () => grpc.ChannelCredentials,
  channelOptions: (address: string) => grpc.ChannelOptions = () => ({}),
): MembershipCalls {
  const clients = new Map<string, MembershipClient>();
  const client = (address: string) => {
    let found = clients.get(address);
    if (!found) {
      found = new MembershipClient(address, credentials(), channelOptions(address));
      clients.set(address, found);
    }
    return found;
  };
  const unary = <Req, Res>(
    method: (
      request: Req,
      metadata: grpc.Metadata,
      options: grpc.CallOptions,
      cb: (e: grpc.ServiceError | null, r: Res) => void,
    ) => unknown,
    request: Req,
  ) =>
    new Promise<Res>((resolve, reject) => {
      method(request, new grpc.Metadata(), { deadline: Date.now() + CALL_DEADLINE_MS }, (error, reply) =>
        error ? reject(error) : resolve(reply),
      );
    });
  return {
    get: (address, shard) => {
      const c = client(address);
      return unary(c.getMembership.bind(c), { cluster, shard });
    },
    change: (address, request) => {
      const c = client(address);
      return unary(c.changeMembership.bind(c), request);
    },
    close: () => {
      for (const c of clients.values()) c.close();
      clients.clear();
    },
  };
}

/** The shard's ready leader and its view, asking every known address until one says it leads. */
export async function leaderView(
  context: DriverContext,
  deadlineMs = Date.now() + 60_000,
): Promise<{ address: string; view: MembershipReply }> {
  const addresses = new Set(context.addresses);
  for (;;) {
    const asked = [...addresses];
    const replies = await Promise.all(
      asked.map((address) => context.calls.get(address, context.shard).catch(() => undefined)),
    );
    for (let i = 0; i < asked.length; i += 1) {
      const reply = replies[i];
      if (reply?.fromLeader) return { address: asked[i]!, view: reply };
      for (const member of reply?.members ?? []) if (member.address !== '') addresses.add(member.address);
      if (reply?.leaderAddress) addresses.add(reply.leaderAddress);
    }
    if (Date.now() > deadlineMs) throw new Error(`shard ${context.shard}: no ready leader answered GetMembership`);
    await sleep(POLL_MS);
  }
}

/** The highest-id member at `address` in a view, if any (ids are never reused: the newest one is there). */
export function memberAt(view: MembershipReply, address: string): MemberView | undefined {
  const found = view.members.filter((member) => member.address === address);
  return found.length === 0 ? undefined : found.reduce((a, b) => (b.id > a.id ? b : a));
}

type StepRequest = Omit<ChangeMembershipRequest, 'cluster' | 'shard' | 'expectedConfigurationSlot'>;

/**
 * Runs one step until `decide` says it is done (returns undefined): each round reads the
 * leader's view, waits out a change in flight, and sends the step with the view's slot.
 */
async function runStep(
  context: DriverContext,
  name: string,
  decide: (view: MembershipReply) => StepRequest | 'wait' | undefined,
): Promise<StepTiming> {
  const started = Date.now();
  const deadline = started + (context.stepTimeoutMs ?? 120_000);
  let lastRefusal = '';
  for (;;) {
    if (Date.now() > deadline)
      throw new Error(
        `shard ${context.shard}: ${name} did not complete in ${context.stepTimeoutMs ?? 120_000} ms (${lastRefusal})`,
      );
    let leader: { address: string; view: MembershipReply };
    try {
      leader = await leaderView(context, deadline);
    } catch (error) {
      lastRefusal = (error as Error).message;
      continue;
    }
    const request = decide(leader.view);
    if (request === undefined) {
      const ms = Date.now() - started;
      context.log(`shard ${context.shard}: ${name}: done in ${ms} ms`);
      return { step: name, ms };
    }
    if (request === 'wait' || leader.view.changeInFlight) {
      await sleep(POLL_MS);
      continue;
    }
    try {
      const reply = await context.calls.change(leader.address, {
        cluster: context.cluster,
        shard: context.shard,
        expectedConfigurationSlot: leader.view.configurationSlot,
        ...request,
      });
      if (!reply.ok && reply.error !== lastRefusal) {
        lastRefusal = reply.error;
        context.log(`shard ${context.shard}: ${name}: ${reply.error}; retrying`);
      }
    } catch (error) {
      lastRefusal = (error as Error).message;
    }
    await sleep(POLL_MS);
  }
}

/** Grows the shard by the replica at `address` (already started): add it as a learner, wait until caught up, promote. */
export async function addVoter(context: DriverContext, address: string): Promise<StepTiming[]> {
  const context2 = { ...context, addresses: [...new Set([...context.addresses, address])] };
  const timings: StepTiming[] = [];
  timings.push(
    await runStep(context2, `add learner at ${address}`, (view) =>
      memberAt(view, address) !== undefined ? undefined : { change: { $case: 'addLearner', addLearner: { address } } },
    ),
  );
  timings.push(
    await runStep(context2, `catch up ${address}`, (view) => {
      const member = memberAt(view, address);
      return member === undefined || member.voter || member.caughtUp ? undefined : 'wait';
    }),
  );
  timings.push(
    await runStep(context2, `promote ${address}`, (view) => {
      const member = memberAt(view, address);
      if (member === undefined)
        throw new Error(`shard ${context.shard}: the learner at ${address} was removed meanwhile`);
      return member.voter ? undefined : { change: { $case: 'promote', promote: member.id } };
    }),
  );
  return timings;
}

/** Shrinks the shard by the member at `address`: demote it (a leader hands over first), then remove it. */
export async function removeVoter(context: DriverContext, address: string): Promise<StepTiming[]> {
  const timings: StepTiming[] = [];
  let id: number | undefined;
  timings.push(
    await runStep(context, `demote ${address}`, (view) => {
      const member = memberAt(view, address);
      id = member?.id ?? id;
      return member === undefined || !member.voter ? undefined : { change: { $case: 'demote', demote: member.id } };
    }),
  );
  timings.push(
    await runStep(context, `remove ${address}`, (view) => {
      const member = id === undefined ? memberAt(view, address) : view.members.find((m) => m.id === id);
      return member === undefined ? undefined : { change: { $case: 'remove', remove: member.id } };
    }),
  );
  return timings;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
