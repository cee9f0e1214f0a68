/*
 * Layer: cli. Argument parsing and the composition root: each command (sync, watch, serve, log,
 * status, verify, demo) builds the real dependencies (disk, state files, processes, ssh) and wires
 * them to the replicator. Nothing else imports from here.
 */
export { buildProgram, main } from "./main.js";
