// Names are bytes (Linux): every byte string but NUL and "/" has exactly one string, the mapping back gives
// the same bytes, and that string is the canonical one a peer must send.
import { fc, test } from "@fast-check/vitest";
import { describe, expect } from "vitest";
import { relativePathProblem } from "../../src/events/paths.js";
import { byteLengthOfName, bytesOfName, hasByteEscapes, isCanonicalName, nameOfBytes } from "../../src/fs/byteNames.js";

const NUM_RUNS = Number(process.env.MIRRORLOG_FC_RUNS ?? 500);

/** Bytes a Linux name may hold: anything but NUL and "/". */
const nameByte = fc.integer({ min: 1, max: 255 }).filter((b) => b !== 0x2f);
/** Mostly high bytes and pieces of UTF-8, where the interesting cases are. */
const interestingByte = fc.oneof(
  nameByte,
  fc.integer({ min: 0x80, max: 0xff }),
  fc.constantFrom(0xc0, 0xc1, 0xc2, 0xc3, 0xe0, 0xed, 0xee, 0xef, 0xf0, 0xf4, 0xf5, 0xbe, 0xbf, 0x80, 0xa0, 0x9f),
);
const nameBytes = fc.oneof(
  fc.array(nameByte, { maxLength: 40 }),
  fc.array(interestingByte, { maxLength: 40 }),
  // Valid UTF-8 text (private use area included), possibly cut or spliced with stray bytes.
  fc
    .tuple(fc.string({ unit: "binary", maxLength: 10 }), fc.array(interestingByte, { maxLength: 4 }), fc.nat(40))
    .map(([text, stray, at]) => {
      const utf8 = [...Buffer.from(text.replaceAll("/", "").replaceAll("\0", ""), "utf8")];
      const cut = at % (utf8.length + 1);
      return [...utf8.slice(0, cut), ...stray, ...utf8.slice(cut)];
    }),
);

describe("byte names", () => {
  test.prop([nameBytes], { numRuns: NUM_RUNS })("bytesOfName ∘ nameOfBytes is the identity, and canonical", (list) => {
    const bytes = Uint8Array.from(list);
    const name = nameOfBytes(bytes);
    expect([...bytesOfName(name)]).toEqual(list);
    expect(isCanonicalName(name)).toBe(true);
    expect(byteLengthOfName(name)).toBe(list.length);
    expect(name.isWellFormed()).toBe(true);
    // A segment of them is a valid path segment exactly when its byte length allows.
    if (list.length > 0 && list.length <= 255 && name !== "." && name !== "..") {
      expect(relativePathProblem(name)).toBeNull();
    }
  });

  test.prop([nameBytes], { numRuns: NUM_RUNS })(
    "valid UTF-8 without escape-range characters is its own string",
    (list) => {
      const bytes = Buffer.from(list);
      const text = new TextDecoder("utf-8", { fatal: false }).decode(bytes);
      const valid = Buffer.from(text, "utf8").equals(bytes);
      if (valid && !hasByteEscapes(text)) expect(nameOfBytes(bytes)).toBe(text);
      else expect(hasByteEscapes(nameOfBytes(bytes))).toBe(true);
    },
  );

  test.prop([fc.string({ unit: "binary", maxLength: 30 })], { numRuns: NUM_RUNS })(
    "a string is canonical exactly when it is the string of its own bytes",
    (text) => {
      expect(isCanonicalName(text)).toBe(nameOfBytes(bytesOfName(text)) === text);
    },
  );

  test.prop([fc.array(fc.integer({ min: 0xef80, max: 0xefff }), { minLength: 1, maxLength: 8 })], {
    numRuns: NUM_RUNS,
  })("two spellings never name one byte string: escapes are canonical only when the bytes are not UTF-8", (units) => {
    const spelled = String.fromCharCode(...units);
    const bytes = bytesOfName(spelled);
    expect(bytes.length).toBe(units.length);
    const canonical = nameOfBytes(bytes);
    expect(isCanonicalName(spelled)).toBe(canonical === spelled);
    expect(isCanonicalName(canonical)).toBe(true);
    expect(bytesOfName(canonical).equals(bytes)).toBe(true);
  });
});
