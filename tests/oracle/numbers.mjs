// Writes tests/fixtures/number_oracle.json: number literals with the text JavaScript gives them, the oracle
// the Rust tests hold parsing and printing to (RFC 8785 prints numbers as JSON.stringify does).
// Run: node tests/oracle/numbers.mjs   (Node only here; CI reads the committed file and needs no Node.)
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const handPicked = [
  // The literals of the security issue: wrongly rounded, flushed to zero, or refused before.
  "9007199254740993.0", "1.00000000000000011102230246251565", "2.4703282292062328e-324", "1.7976931348623158e308",
  // Edges of the double range and of exact integers.
  "5e-324", "4.9406564584124654e-324", "2.2250738585072011e-308", "2.2250738585072012e-308", "2.2250738585072014e-308",
  "1.7976931348623157e308", "1.7976931348623159e308", "1e308", "1e309", "-1e400", "1e-400", "-0", "-0.0", "0e10",
  "9007199254740991", "9007199254740992", "9007199254740993", "-9007199254740991", "-9007199254740992",
  "9007199254740992.0", "9007199254740994.5", "18446744073709551615", "123456789012345678901234567890",
  // Where JavaScript switches between fixed and exponent notation.
  "1e20", "1e21", "1e-6", "1e-7", "123e-20", "0.000001", "0.0000001", "100000000000000000000", "999999999999999999999",
  "0.1", "0.2", "0.30000000000000004", "1.5", "2.75", "333333333.33333329", "1E30", "4.50", "2e-3",
  "0.000000000000000000000000001", "1.0000000000000002", "0.9999999999999999", "1.00000000000000005",
  // Halfway cases that need correct rounding.
  "9007199254740993.5", "1.00000000000000011102230246251566", "0.1000000000000000055511151231257827",
];

// A fixed-seed generator, so the corpus only changes when this script does.
let seed = 0x2545f4914f6cdd1dn;
function next64() {
  seed ^= seed << 13n; seed &= (1n << 64n) - 1n;
  seed ^= seed >> 7n;
  seed ^= seed << 17n; seed &= (1n << 64n) - 1n;
  return seed;
}
const view = new DataView(new ArrayBuffer(8));
const generated = [];
while (generated.length < 400) {
  view.setBigUint64(0, next64());
  const x = view.getFloat64(0);
  if (!Number.isFinite(x)) continue;
  // The shortest form, 17 significant digits, and more digits than a double holds.
  generated.push(String(x), x.toPrecision(17), x.toExponential(24));
}

const cases = [...handPicked, ...generated].map((literal) => {
  const parsed = JSON.parse(literal);
  const integerLiteral = /^-?\d+$/.test(literal);
  return { literal, integer_literal: integerLiteral, finite: Number.isFinite(parsed), json_stringify: JSON.stringify(parsed) };
});
const out = fileURLToPath(new URL("../fixtures/number_oracle.json", import.meta.url));
writeFileSync(out, JSON.stringify({ generator: "tests/oracle/numbers.mjs", node: process.version, cases }, null, 1) + "\n");
console.log(`${cases.length} cases -> ${out}`);
