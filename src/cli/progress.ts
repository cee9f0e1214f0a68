import cliProgress from "cli-progress";
import { bytes } from "./report.js";

/** Scan and transfer progress on stderr: a bar on a TTY, nothing otherwise (a non-TTY bar prints garbage). */
export interface ProgressDisplay {
  scanned(files: number): void;
  transferred(done: number, planned: number, contentBytes: number): void;
  stop(): void;
}

/** A display that shows nothing (not a TTY, or --json). */
export const silentProgress: ProgressDisplay = { scanned() {}, transferred() {}, stop() {} };

/**
 * One bar on stderr when it is a TTY and JSON output was not asked for. Scanning and transfer overlap
 * (the source is read directory by directory while the target applies), so both show on the same line.
 */
export function progressDisplay(enabled: boolean): ProgressDisplay {
  if (!enabled || !process.stderr.isTTY) return silentProgress;
  const started = performance.now();
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format:
        "scanned {scanned} files | transfer [{bar}] {value}/{total} ops | {bytes} | {rate}/s | ETA {eta_formatted}",
      hideCursor: true,
      clearOnComplete: false,
      fps: 10,
    },
    cliProgress.Presets.shades_classic,
  );
  let scanned = 0;
  let contentBytes = 0;
  let running = false;
  const payload = () => {
    const seconds = Math.max((performance.now() - started) / 1000, 0.001);
    return { scanned, bytes: bytes(contentBytes), rate: bytes(Math.round(contentBytes / seconds)) };
  };
  const ensureStarted = () => {
    if (running) return;
    bar.start(0, 0, payload());
    running = true;
  };
  return {
    scanned(files) {
      ensureStarted();
      scanned = files;
      bar.update(payload());
    },
    transferred(done, planned, shipped) {
      ensureStarted();
      contentBytes = shipped;
      bar.setTotal(planned);
      bar.update(done, payload());
    },
    stop() {
      if (running) bar.stop();
    },
  };
}
