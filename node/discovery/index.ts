// Leader discovery over NATS (SPEC section 5): records, the announcer a leader runs, and
// the watcher coordinators, clients, the CLI and the operator use.
export * from './leader-record.js';
export * from './leader-announcer.js';
export * from './leader-watcher.js';
export { openLeaderBucket } from './nats-connection.js';
