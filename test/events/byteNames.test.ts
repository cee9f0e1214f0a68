// The edges of names as bytes (src/fs/byteNames.ts): which bytes stay text, which become U+EF80–U+EFFF
// escapes, and which spellings a peer may not send because another string names the same bytes.
import { describe, expect, it } from "vitest";
import { relativePathProblem } from "../../src/events/paths.js";
import { byteLengthOfName, bytesOfName, isCanonicalName, nameOfBytes } from "../../src/fs/byteNames.js";

/** The escape of one byte that is not part of valid UTF-8. */
const esc = (...bytes: number[]) => String.fromCharCode(...bytes.map((b) => 0xef00 + b));

const EDGES: [label: string, bytes: number[], name: string][] = [
  ["ASCII", [0x61, 0x5c, 0x62], "a\\b"],
  ["two-byte UTF-8 (é)", [0xc3, 0xa9], "é"],
  ["the smallest two-byte character (U+0080)", [0xc2, 0x80], "\u0080"],
  ["three-byte UTF-8 (€)", [0xe2, 0x82, 0xac], "€"],
  ["four-byte UTF-8 (😀)", [0xf0, 0x9f, 0x98, 0x80], "😀"],
  ["the largest code point (U+10FFFF)", [0xf4, 0x8f, 0xbf, 0xbf], "\u{10ffff}"],
  ["a private-use character just below the escapes (U+EF7F)", [0xee, 0xbd, 0xbf], "\uef7f"],
  ["0xff", [0xff], "\uefff"],
  ["0x80, a lone continuation byte", [0x80], "\uef80"],
  ["Latin-1 é (0xe9) inside ASCII", [0x63, 0x61, 0x66, 0xe9], `caf${esc(0xe9)}`],
  ["a real U+EF80: three escapes", [0xee, 0xbe, 0x80], esc(0xee, 0xbe, 0x80)],
  ["a real U+EFFF: three escapes", [0xee, 0xbf, 0xbf], esc(0xee, 0xbf, 0xbf)],
  ["overlong two-byte '/' (C0 AF)", [0xc0, 0xaf], esc(0xc0, 0xaf)],
  ["overlong two-byte (C1 BF)", [0xc1, 0xbf], esc(0xc1, 0xbf)],
  ["overlong three-byte (E0 80 AF)", [0xe0, 0x80, 0xaf], esc(0xe0, 0x80, 0xaf)],
  ["overlong four-byte (F0 80 80 AF)", [0xf0, 0x80, 0x80, 0xaf], esc(0xf0, 0x80, 0x80, 0xaf)],
  ["a UTF-8-encoded surrogate (ED A0 80)", [0xed, 0xa0, 0x80], esc(0xed, 0xa0, 0x80)],
  ["the last valid before surrogates (ED 9F BF = U+D7FF)", [0xed, 0x9f, 0xbf], "\ud7ff"],
  ["beyond U+10FFFF (F4 90 80 80)", [0xf4, 0x90, 0x80, 0x80], esc(0xf4, 0x90, 0x80, 0x80)],
  ["a lead byte that never starts UTF-8 (F5)", [0xf5, 0x80], esc(0xf5, 0x80)],
  ["a truncated character, then ASCII", [0xe2, 0x82, 0x61], `${esc(0xe2, 0x82)}a`],
  ["a truncated character at the end", [0x61, 0xf0, 0x9f, 0x98], `a${esc(0xf0, 0x9f, 0x98)}`],
  ["a stray byte between characters", [0xc3, 0xa9, 0xff, 0xf0, 0x9f, 0x98, 0x80], `é${esc(0xff)}😀`],
  ["a real U+EF80 beside a stray byte", [0xee, 0xbe, 0x80, 0xfe], esc(0xee, 0xbe, 0x80, 0xfe)],
  // A decoder drops a leading byte order mark unless told not to: the name would lose its first character.
  ["a leading byte order mark (U+FEFF)", [0xef, 0xbb, 0xbf, 0x61], "\ufeffa"],
  ["a byte order mark alone", [0xef, 0xbb, 0xbf], "\ufeff"],
  ["a byte order mark, then a stray byte", [0xef, 0xbb, 0xbf, 0xff], `\ufeff${esc(0xff)}`],
];

describe("nameOfBytes / bytesOfName", () => {
  it.each(EDGES)("%s", (_label, bytes, name) => {
    expect(nameOfBytes(Uint8Array.from(bytes))).toBe(name);
    expect([...bytesOfName(name)]).toEqual(bytes);
    expect(isCanonicalName(name)).toBe(true);
    expect(byteLengthOfName(name)).toBe(bytes.length);
  });

  it("the empty byte string is the empty string", () => {
    expect(nameOfBytes(new Uint8Array())).toBe("");
    expect(bytesOfName("").length).toBe(0);
  });
});

describe("isCanonicalName", () => {
  it.each([
    ["escapes spelling valid UTF-8 (é)", "\uefc3\uefa9"],
    ["escapes spelling € in a longer name", `x${esc(0xe2, 0x82, 0xac)}y`],
    ["escapes spelling 😀", esc(0xf0, 0x9f, 0x98, 0x80)],
    ["escapes spelling U+FF80 (EF BE 80)", esc(0xef, 0xbe, 0x80)],
    ["escapes spelling U+0080", esc(0xc2, 0x80)],
    ["a lone high surrogate", "a\ud800"],
    ["a lone low surrogate", "\udc00b"],
  ])("refuses %s", (_label, text) => {
    expect(isCanonicalName(text)).toBe(false);
    expect(relativePathProblem(text)).toMatch(/canonical spelling/);
  });

  it.each([
    ["plain text", "日本/語"],
    ["an escape of a stray byte", "\uefff"],
    ["escapes that a space keeps apart", `${esc(0xc3)} ${esc(0xa9)}`],
    ["escapes of a real U+EF80", esc(0xee, 0xbe, 0x80)],
    ["an escaped lead byte before ASCII", `${esc(0xc3)}a`],
    ["a leading byte order mark in a path with escapes", `\ufeff\u0001/${esc(0xee, 0xbe, 0x80)}`],
  ])("accepts %s", (_label, text) => {
    expect(isCanonicalName(text)).toBe(true);
  });

  it("two different strings never name the same bytes", () => {
    const spellings = ["é", "\uefc3\uefa9"];
    expect(spellings.map((s) => bytesOfName(s).toString("hex"))).toEqual(["c3a9", "c3a9"]);
    expect(spellings.filter(isCanonicalName)).toEqual(["é"]);
  });
});
