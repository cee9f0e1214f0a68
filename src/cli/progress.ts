import cliProgress from "cli-progress";
import { bytes } from "./report.js";

/** Scan and transfer progress on stderr: bars on a TTY, nothing otherwise (a non-TTY bar prints garbage). */
export interface ProgressDisplay {
  scanned(files: number): void;
  transferred(done: number, planned: number, contentBytes: number): void;
  stop(): void;
}

/** A display that shows nothing (not a TTY, or --json). */
export const silentProgress: ProgressDisplay = { scanned() {}, transferred() {}, stop() {} };

/** Bars on stderr when it is a TTY and JSON output was not asked for. */
export function progressDisplay(enabled: boolean): ProgressDisplay {
  if (!enabled || !process.stderr.isTTY) return silentProgress;
  const started = performance.now();
  let bar: cliProgress.SingleBar | undefined;
  let phase: "scan" | "transfer" | undefined;
  const begin = (next: "scan" | "transfer", format: string, total: number): cliProgress.SingleBar => {
    if (phase !== next) {
      bar?.stop();
      bar = new cliProgress.SingleBar(
        { stream: process.stderr, format, hideCursor: true, clearOnComplete: false, fps: 10 },
        cliProgress.Presets.shades_classic,
      );
      bar.start(total, 0, { bytes: "0 B", rate: "0 B" });
      phase = next;
    }
    return bar!;
  };
  return {
    scanned(files) {
      const b = begin("scan", "scanning  {value} files", 0);
      b.setTotal(files);
      b.update(files);
    },
    transferred(done, planned, contentBytes) {
      const b = begin(
        "transfer",
        "transfer  [{bar}] {value}/{total} ops | {bytes} | {rate}/s | ETA {eta_formatted}",
        planned,
      );
      const seconds = Math.max((performance.now() - started) / 1000, 0.001);
      b.setTotal(planned);
      b.update(done, { bytes: bytes(contentBytes), rate: bytes(Math.round(contentBytes / seconds)) });
    },
    stop() {
      bar?.stop();
    },
  };
}
