// The fault suite's long version (not in CI): the same scenarios as test/faults/*.test.ts for many more
// iterations. N kill points on the source, N on the target's serve, and N faulted transport runs.
//
//   node --import tsx bench/soak.ts 500                  # N = 500 of each
//   node --import tsx bench/soak.ts 50 --only transport  # one scenario: source | target | transport
//   MIRRORLOG_FAULT_SEED=123 node --import tsx bench/soak.ts 100   # replay
//
// Needs a built dist/ (npm run build). Prints a summary per scenario and every failure; exits 1 on any.
import {
  chooseFaultSeed,
  makeWorkspace,
  removeWorkspace,
  runCrashPoints,
  runTransportFaults,
  SILENT_FAULTS,
  SURVIVABLE_FAULTS,
} from "../test/faults/faultScenarios.js";

const args = process.argv.slice(2);
const iterations = Number(args.find((a) => /^\d+$/.test(a)) ?? 100);
const only = args.includes("--only") ? args[args.indexOf("--only") + 1] : undefined;
const verbose = args.includes("--verbose");
const seed = chooseFaultSeed();
const log = (line: string) => process.stdout.write(`${line}\n`);
const failures: string[] = [];

log(`soak: N=${iterations}, seed ${seed} (replay with MIRRORLOG_FAULT_SEED=${seed})`);

for (const victim of ["source", "target"] as const) {
  if (only !== undefined && only !== victim) continue;
  const ws = makeWorkspace(`soak-${victim}`);
  try {
    const report = await runCrashPoints(ws, {
      seed,
      victim,
      points: iterations,
      ...(verbose ? { onPoint: (line: string) => log(`  ${line}`) } : {}),
    });
    log(
      `kill -9 ${victim}: ${report.killed} points landed, ${report.missed} missed, ${report.restarts} restarts, ` +
        `${report.staleLocks} stale locks, ${report.failures.length} failures, ${report.observer.filesRead} files ` +
        `observed, ${(report.durationMs / 1000).toFixed(1)} s`,
    );
    failures.push(...report.failures);
  } finally {
    removeWorkspace(ws);
  }
}

if (only === undefined || only === "transport") {
  const ws = makeWorkspace("soak-transport");
  try {
    const report = await runTransportFaults(ws, {
      seed,
      runs: iterations,
      kinds: [...SURVIVABLE_FAULTS, ...SILENT_FAULTS],
      lowLengthBytes: true,
      runDeadlineMs: 30_000,
      ...(verbose ? { onRun: (line: string) => log(`  ${line}`) } : {}),
    });
    log(
      `transport: ${report.runs} runs, ${report.framesMangled} frames mangled ` +
        `${JSON.stringify(report.byKind)}, ${report.convergedByItself} converged by themselves, ` +
        `${report.detectedAndFailed} failed with a transport error, ${report.convergedOnSecondRun} converged on a ` +
        `clean second run, ${report.failures.length} failures, ${(report.durationMs / 1000).toFixed(1)} s`,
    );
    failures.push(...report.failures);
  } finally {
    removeWorkspace(ws);
  }
}

for (const failure of failures) log(`FAILURE: ${failure}`);
log(failures.length === 0 ? "soak: all survived" : `soak: ${failures.length} failures`);
process.exitCode = failures.length === 0 ? 0 : 1;
