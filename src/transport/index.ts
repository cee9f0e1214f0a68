/*
 * Layer: transport. How requests reach a target: the in-process transport behind the seed's
 * rpcHandle, length-prefixed msgpack frames, the pipelining stream client and server, and ssh /
 * local child processes. It knows messages only as values (validation is given to it), and imports
 * nothing from fs, projections, replicator or cli.
 */
export * from "./frames.js";
export * from "./inProcess.js";
export * from "./sshCommand.js";
export * from "./streamConnection.js";
