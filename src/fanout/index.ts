// Fan-out through NATS JetStream: one source, many targets. Owns the stream/bucket layout on the server,
// the publisher's stream-backed target and the subscriber's driver of ReplicatorTarget. It may import
// events, content, projections, fs, replicator and the CLI's helpers (errors, state paths, lock); it must
// not be imported by them: only cli/main.ts loads it, lazily, inside the publish/subscribe/status actions.
export { type PublishOptions, type PublishSummary, runPublish } from "./publish.js";
export { type FanoutStatus, type FanoutStatusOptions, runFanoutStatus, type SubscriberStatus } from "./status.js";
export { defaultConsumerName, runSubscribe, type SubscribeOptions, type SubscribeSummary } from "./subscribe.js";
