// The Membership service (proto shardbank.v1.Membership) of one replica: its view of the
// shard's configuration, and one change at a time on the ready leader (docs/ARCHITECTURE.md,
// "Membership"). GetMembership needs the read role (the view is what ClusterStatus shows);
// ChangeMembership the admin role (docs/SECURITY.md).
import * as grpc from '@grpc/grpc-js';
import type {
  ChangeMembershipRequest,
  GetMembershipRequest,
  MemberView,
  MembershipReply,
  MembershipServer,
} from '../gen/shardbank/v1/bank.js';
import { addressProblem, MEMBER_ID_LIMIT, type ConfigurationChange } from '../paxos/membership.js';
import type { CallNeed, ClientAuthorizer } from '../security/client-tls.js';
import type { Replica } from './replica.js';

/** How long a change may take to be chosen before the caller is told to re-read. */
export const CHANGE_CHOSEN_TIMEOUT_MS = 10_000;
const CHANGE_POLL_MS = 10;
/** The core's refusal while its pipeline is full, and how long a change waits for room. */
const PIPELINE_FULL = 'the pipeline is full; retry';
const PIPELINE_WAIT_MS_MAX = 2_000;

type Validated<T> = { ok: true; value: T } | { ok: false; error: string };

/** The change a request asks for, or why it is malformed (naming the field). */
export function changeOfRequest(request: ChangeMembershipRequest): Validated<ConfigurationChange> {
  const change = request.change;
  if (change === undefined)
    return { ok: false, error: 'change: one of add_learner, promote, demote, remove is required' };
  if (change.$case === 'addLearner') {
    const problem = addressProblem(change.addLearner.address);
    if (problem !== undefined) return { ok: false, error: `add_learner.address: ${problem}` };
    return { ok: true, value: { type: 'add-learner', address: change.addLearner.address } };
  }
  const member = (change as { [key: string]: unknown })[change.$case] as number;
  const field = change.$case;
  if (!Number.isInteger(member) || member < 0 || member >= MEMBER_ID_LIMIT)
    return { ok: false, error: `${field}: member id ${member} is not in 0..${MEMBER_ID_LIMIT - 1}` };
  return { ok: true, value: { type: field, member } };
}

export class MembershipService {
  constructor(
    private readonly replica: Replica,
    private readonly authorizer?: ClientAuthorizer,
  ) {}

  implementation(): MembershipServer {
    return {
      getMembership: (call, callback) => {
        if (this.refused(call, callback, 'read')) return;
        const invalid = this.requestProblem(call.request);
        if (invalid !== undefined) {
          callback({ code: grpc.status.INVALID_ARGUMENT, details: invalid });
          return;
        }
        callback(null, this.view());
      },
      changeMembership: (call, callback) => {
        if (this.refused(call, callback, 'admin')) return;
        const invalid = this.requestProblem(call.request);
        if (invalid !== undefined) {
          callback({ code: grpc.status.INVALID_ARGUMENT, details: invalid });
          return;
        }
        const change = changeOfRequest(call.request);
        if (!change.ok) {
          callback({ code: grpc.status.INVALID_ARGUMENT, details: change.error });
          return;
        }
        this.change(change.value, call.request.expectedConfigurationSlot).then(
          (reply) => callback(null, reply),
          (error: unknown) => callback({ code: grpc.status.INTERNAL, details: (error as Error).message }),
        );
      },
    };
  }

  private refused(
    call: { getPeer(): string },
    callback: (error: grpc.ServiceError | null) => void,
    need: CallNeed,
  ): boolean {
    const refusal = this.authorizer?.refusal(call.getPeer(), need, []);
    if (!refusal) return false;
    callback(
      Object.assign(new Error(refusal.message), {
        code: refusal.code,
        details: refusal.message,
        metadata: new grpc.Metadata(),
      }),
    );
    return true;
  }

  private requestProblem(request: GetMembershipRequest): string | undefined {
    const { cluster, shard } = this.replica.config;
    if (request.cluster !== cluster)
      return `cluster: ${JSON.stringify(request.cluster)} is not this cluster (${cluster})`;
    if (request.shard !== shard) return `shard: ${request.shard} is not this replica's shard (${shard})`;
    return undefined;
  }

  /** This replica's view: the newest chosen configuration, with the leader's progress per member. */
  view(): MembershipReply {
    const core = this.replica.node.core;
    const configuration = core.latestConfiguration;
    const self = this.replica.member;
    const leading = core.isReadyLeader;
    const ids = [...configuration.voters, ...configuration.learners].sort((a, b) => a - b);
    const members: MemberView[] = ids.map((id) => {
      const progress = id === self ? undefined : core.memberProgress(id);
      return {
        id,
        address: this.replica.addressOfMember(id) ?? '',
        voter: configuration.voters.includes(id),
        caughtUp: id === self ? leading : (progress?.caughtUp ?? false),
        commitIndex: id === self ? core.commitIndex : (progress?.commitIndex ?? 0),
      };
    });
    const leader = core.leaderOrdinal;
    return {
      ok: true,
      error: '',
      leaderId: leader,
      leaderAddress: this.replica.addressOfMember(leader) ?? '',
      members,
      nextMemberId: configuration.nextMemberId,
      configurationSlot: core.latestConfigurationSlot,
      changeInFlight: core.configurationChangeInFlight,
      commitIndex: core.commitIndex,
      proposedSlot: 0,
      fromLeader: leading,
    };
  }

  private refusal(error: string): MembershipReply {
    return { ...this.view(), ok: false, error };
  }

  /** One step on the ready leader, answered once chosen (or refused, as ok=false with why). */
  async change(change: ConfigurationChange, expectedSlot: number): Promise<MembershipReply> {
    const core = this.replica.node.core;
    if (!core.isReadyLeader) return this.refusal('not the leader: ask the leader (leader_id, leader_address)');
    const slot = core.latestConfigurationSlot;
    if (expectedSlot !== slot)
      return this.refusal(
        `expected_configuration_slot: ${expectedSlot} is not the newest configuration's slot ${slot} (it changed since it was read): re-read and retry`,
      );
    const self = this.replica.member;
    if ((change.type === 'demote' || change.type === 'remove') && change.member === self) {
      // The leader cannot vote itself out (its own quorum would lose it mid-change): it hands
      // leadership to the most caught-up voter; the caller retries there.
      const target = this.replica.node.transferLeadership();
      this.replica.poke();
      return this.refusal(
        target < 0
          ? `${change.type}: member ${self} is the leader and no caught-up voter can take over; retry later`
          : 'leadership handed over; retry at the new leader',
      );
    }
    const ballot = core.leaderBallot;
    let proposed = core.proposeConfigurationChange(change);
    // A full pipeline (its slots in flight) frees within a round trip: wait a little here
    // rather than send the caller round again.
    for (
      let waited = 0;
      !proposed.ok && proposed.error === PIPELINE_FULL && waited < PIPELINE_WAIT_MS_MAX;
      waited += 5
    ) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      if (!core.isReadyLeader || core.latestConfigurationSlot !== slot)
        return this.refusal('the leader or the configuration changed meanwhile: re-read and retry');
      proposed = core.proposeConfigurationChange(change);
    }
    if (!proposed.ok) return this.refusal(proposed.error);
    this.replica.poke();
    const at = proposed.slot!;
    const deadline = Date.now() + CHANGE_CHOSEN_TIMEOUT_MS;
    for (;;) {
      if (core.commitIndex >= at) break;
      const sameLeader =
        core.role === 'leader' &&
        core.leaderBallot.round === ballot.round &&
        core.leaderBallot.ordinal === ballot.ordinal;
      if (!sameLeader)
        return this.refusal(
          `leadership changed before slot ${at} was chosen: the outcome is unknown; re-read the membership`,
        );
      if (Date.now() > deadline)
        return this.refusal(`slot ${at} not chosen within ${CHANGE_CHOSEN_TIMEOUT_MS} ms: re-read the membership`);
      await new Promise((resolve) => setTimeout(resolve, CHANGE_POLL_MS));
    }
    if (core.latestConfigurationSlot !== at)
      return this.refusal(`the entry at slot ${at} was chosen but void (another change came first): re-read and retry`);
    return { ...this.view(), proposedSlot: at };
  }
}
