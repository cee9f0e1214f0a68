/**
 * Milliseconds on the process's monotonic clock (CLOCK_MONOTONIC through process.hrtime), for durations,
 * deadlines and quiet periods. The same clock as `performance.now()` up to its origin, without loading
 * perf_hooks, which the first `performance` costs every start (≈ 1.2 ms and eight modules).
 */
export function monotonicMs(): number {
  const [seconds, nanoseconds] = process.hrtime();
  return seconds * 1e3 + nanoseconds / 1e6;
}
