/**
 * Names as bytes, carried losslessly in strings. Linux names are byte strings; mirrorlog's paths are
 * JavaScript strings (the wire, the log and the seed's API speak strings). A name that is valid UTF-8 is
 * its own string; each byte that is not part of valid UTF-8 becomes one code point of U+EF80–U+EFFF (the
 * private use area, never produced by real text in practice), so `bytesOfName(nameOfBytes(b))` is `b` for
 * every byte string. A real U+EF80–U+EFFF in a name is escaped the same way (its three UTF-8 bytes become
 * three escapes), which keeps the mapping one-to-one. Only the canonical string of a byte string is
 * accepted from a peer (`isCanonicalName`), so two spellings can never name one file.
 */

const ESCAPE_BASE = 0xef00;
const ESCAPE_FIRST = 0xef80;
const ESCAPE_LAST = 0xefff;
// ignoreBOM keeps a leading U+FEFF: by default a TextDecoder drops it, and a name starting with one
// would stand for other bytes (its file was never found again, so it was never mirrored).
const strictDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** True when `text` holds at least one byte escape (a code unit in U+EF80–U+EFFF). */
export function hasByteEscapes(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit >= ESCAPE_FIRST && unit <= ESCAPE_LAST) return true;
  }
  return false;
}

/** The string of a byte string (a name, a path or a symlink target): UTF-8 where valid, escapes elsewhere. */
export function nameOfBytes(raw: Uint8Array): string {
  try {
    const text = strictDecoder.decode(raw);
    if (!hasByteEscapes(text)) return text;
  } catch {
    // not valid UTF-8: decode byte by byte below
  }
  let text = "";
  let i = 0;
  while (i < raw.length) {
    const length = validSequenceLength(raw, i);
    if (length === 0) {
      text += String.fromCharCode(ESCAPE_BASE + raw[i]!);
      i += 1;
      continue;
    }
    const char = strictDecoder.decode(raw.subarray(i, i + length));
    const unit = char.charCodeAt(0);
    if (unit >= ESCAPE_FIRST && unit <= ESCAPE_LAST) {
      for (let k = 0; k < length; k++) text += String.fromCharCode(ESCAPE_BASE + raw[i + k]!);
    } else {
      text += char;
    }
    i += length;
  }
  return text;
}

/** The bytes a string stands for (the inverse of `nameOfBytes`). */
export function bytesOfName(text: string): Buffer {
  if (!hasByteEscapes(text)) return Buffer.from(text, "utf8");
  const parts: Buffer[] = [];
  let plain = "";
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit >= ESCAPE_FIRST && unit <= ESCAPE_LAST) {
      if (plain !== "") parts.push(Buffer.from(plain, "utf8"));
      plain = "";
      parts.push(Buffer.of(unit - ESCAPE_BASE));
    } else {
      plain += text[i];
    }
  }
  if (plain !== "") parts.push(Buffer.from(plain, "utf8"));
  return Buffer.concat(parts);
}

/** True when `text` is the one string mirrorlog uses for the bytes it stands for (no lone surrogates either). */
export function isCanonicalName(text: string): boolean {
  if (!text.isWellFormed()) return false;
  if (!hasByteEscapes(text)) return true;
  return nameOfBytes(bytesOfName(text)) === text;
}

/** Length in bytes of what `text` stands for. */
export function byteLengthOfName(text: string): number {
  if (!hasByteEscapes(text)) return Buffer.byteLength(text, "utf8");
  return bytesOfName(text).length;
}

/** Length of the valid UTF-8 sequence starting at `i`, or 0 when the byte there does not start one. */
function validSequenceLength(raw: Uint8Array, i: number): number {
  const b0 = raw[i]!;
  if (b0 < 0x80) return 1;
  const need = b0 >= 0xc2 && b0 <= 0xdf ? 2 : b0 >= 0xe0 && b0 <= 0xef ? 3 : b0 >= 0xf0 && b0 <= 0xf4 ? 4 : 0;
  if (need === 0 || i + need > raw.length) return 0;
  for (let k = 1; k < need; k++) if ((raw[i + k]! & 0xc0) !== 0x80) return 0;
  const b1 = raw[i + 1]!;
  if (b0 === 0xe0 && b1 < 0xa0) return 0; // overlong
  if (b0 === 0xed && b1 >= 0xa0) return 0; // surrogate
  if (b0 === 0xf0 && b1 < 0x90) return 0; // overlong
  if (b0 === 0xf4 && b1 >= 0x90) return 0; // beyond U+10FFFF
  return need;
}
