// The measurement periods of a contract year, as the API's period labels ("2026-10",
// "2026-Q2", "CY3", ranges "a..b"; contracts/periods.py).

export type MeasurementPeriod = "month" | "quarter" | "contract_year";

interface YearMonth { y: number; m: number } // m: 1..12

function parseDate(text: string): { y: number; m: number; d: number } {
  const match = /^(\d{4})-(\d{2})-(\d{2})/.exec(text);
  if (!match) throw new Error(`not a date: ${text}`);
  return { y: Number(match[1]), m: Number(match[2]), d: Number(match[3]) };
}

function monthLabel({ y, m }: YearMonth): string {
  return `${y}-${String(m).padStart(2, "0")}`;
}

function next({ y, m }: YearMonth, months: number): YearMonth {
  const k = y * 12 + (m - 1) + months;
  return { y: Math.floor(k / 12), m: (k % 12) + 1 };
}

/** The first month (or quarter) that starts on or after the start of contract year `year`
 * (a period belongs to the contract year its start is in). */
function firstOfYear(contractStart: string, year: number, step: 1 | 3): YearMonth {
  const s = parseDate(contractStart);
  let at: YearMonth = { y: s.y + year - 1, m: s.m };
  const startsOnFirst = s.d === 1;
  if (step === 1) return startsOnFirst ? at : next(at, 1);
  const quarterStart = Math.floor((at.m - 1) / 3) * 3 + 1;
  if (quarterStart === at.m && startsOnFirst) return at;
  at = { y: at.y, m: quarterStart };
  return next(at, 3);
}

/** The labels of contract year `year`'s periods up to and including `current` (the open
 * period), in order. */
export function contractYearPeriods(contractStart: string, measurement: MeasurementPeriod,
                                    year: number, current: string): string[] {
  if (measurement === "contract_year") return [`CY${year}`];
  const step = measurement === "month" ? 1 : 3;
  const out: string[] = [];
  let at = firstOfYear(contractStart, year, step);
  for (let k = 0; k < 12 / step; k++) {
    const label = step === 1 ? monthLabel(at) : `${at.y}-Q${Math.floor((at.m - 1) / 3) + 1}`;
    out.push(label);
    if (label === current) break;
    at = next(at, step);
  }
  return out;
}

/** One label, or the range from the first to the last. */
export function rangeLabel(labels: string[]): string {
  if (labels.length === 0) throw new Error("no periods");
  return labels.length === 1 ? labels[0]! : `${labels[0]}..${labels[labels.length - 1]}`;
}
