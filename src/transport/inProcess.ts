import { type Request, type Response, ResponseSchema } from "../events/protocol.js";
import { decodeFramePayload, encodeFramePayload, FRAME_HEADER_BYTES } from "./frames.js";

/** Bytes that crossed the RPC boundary, counted as encoded frames (header included). */
export interface WireStats {
  requests: number;
  bytesSent: number;
  bytesReceived: number;
}

/** Anything that answers requests the way a ReplicatorTarget does. */
export interface RequestHandler {
  handleRequest(request: unknown): Response;
}

/** The seed's rpcHandle plus the bytes it moved. */
export interface InProcessTransport {
  rpcHandle: (request: Request) => Response;
  stats: WireStats;
}

/**
 * The in-process transport behind the seed's `rpcHandle`: every request and response is encoded with
 * the wire codec, decoded and zod-validated on the other side, exactly as it would cross a stream. Only
 * the frame header (length and checksum, for bytes that cross a pipe) is left out; it is still counted.
 */
export function connectInProcess(target: RequestHandler): InProcessTransport {
  const stats: WireStats = { requests: 0, bytesSent: 0, bytesReceived: 0 };
  const rpcHandle = (request: Request): Response => {
    const requestPayload = encodeFramePayload(request);
    stats.requests++;
    stats.bytesSent += FRAME_HEADER_BYTES + requestPayload.length;
    // The target validates what it receives itself, as it would off a stream.
    const responsePayload = encodeFramePayload(target.handleRequest(decodeFramePayload(requestPayload)));
    stats.bytesReceived += FRAME_HEADER_BYTES + responsePayload.length;
    return ResponseSchema.parse(decodeFramePayload(responsePayload));
  };
  return { rpcHandle, stats };
}
