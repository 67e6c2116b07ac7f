// How numbers, money, times and ages read on the dashboard.

export function pct(value: number | null | undefined, digits = 2): string {
  return value == null || !Number.isFinite(value) ? "–" : `${value.toFixed(digits)} %`;
}

/** 97.5 → "97.50"; no unit (for big KPI figures with the unit set apart). */
export function num(value: number | null | undefined, digits = 2): string {
  return value == null || !Number.isFinite(value) ? "–" : value.toFixed(digits);
}

const moneyFormats = new Map<string, Intl.NumberFormat>();

export function money(value: number | null | undefined, currency: string): string {
  if (value == null || !Number.isFinite(value)) return "–";
  let f = moneyFormats.get(currency);
  if (!f) {
    try {
      f = new Intl.NumberFormat("en-US", { style: "currency", currency,
                                           maximumFractionDigits: 0 });
    } catch {
      f = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
    }
    if (moneyFormats.size < 16) moneyFormats.set(currency, f);
  }
  return f.format(value);
}

/** Seconds, minutes, hours or days: "4 s", "12 min", "3 h 5 min", "2 d 4 h". */
export function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d} d ${h % 24} h` : `${d} d`;
}

export function ago(ms: number): string {
  return `${duration(ms)} ago`;
}

/** Local time of day, 24 h: "14:05:09". */
export function clock(tsMs: number): string {
  const d = new Date(tsMs);
  const two = (n: number) => String(n).padStart(2, "0");
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

/** Local date and time: "2026-10-03 14:05". */
export function dateTime(tsMs: number): string {
  const d = new Date(tsMs);
  const two = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ` +
    `${two(d.getHours())}:${two(d.getMinutes())}`;
}

/** snake_case → words: "scheduled_maintenance" → "scheduled maintenance". */
export function words(text: string | null | undefined): string {
  return text ? text.replace(/_/g, " ") : "";
}

const UNITS: Record<string, string> = {
  active_power_kw: "kW", available_power_kw: "kW", available_energy_kwh: "kWh",
  soc_pct: "%", soh_pct: "%", load_pct: "%", temperature_c: "°C", cell_temp_max_c: "°C",
  q_kvar: "kvar", v_pu: "pu", f_hz: "Hz", voltage_v: "V", current_a: "A", temp_c_avg: "°C",
  efficiency_pct: "%",
};

/** Decimals where one is too few to see the value move. */
const DIGITS: Record<string, number> = { v_pu: 3, f_hz: 3 };

/** Codes shown as words. */
const CODES: Record<string, readonly string[]> = {
  cooling_status: ["idle", "cooling", "heating", "failed"],
};

const LABELS: Record<string, string> = {
  status_code: "status code", active_power_kw: "active power",
  available_power_kw: "available power", available_energy_kwh: "available energy",
  soc_pct: "state of charge", soh_pct: "state of health", alarm_word: "alarm word",
  temperature_c: "temperature", cell_temp_max_c: "max cell temperature", load_pct: "load",
  q_kvar: "reactive power", v_pu: "grid voltage", f_hz: "grid frequency",
  voltage_v: "DC voltage", current_a: "DC current", temp_c_avg: "average cell temperature",
  cycle_count: "equivalent full cycles", cooling_status: "cooling",
  efficiency_pct: "efficiency",
};

/** The tags the dashboard has words for: the explorer offers them before an asset says more. */
export const COMMON_TAGS: readonly string[] = Object.keys(LABELS);

export function tagLabel(tag: string): string {
  return LABELS[tag] ?? words(tag);
}

export function tagValue(tag: string, value: number): string {
  if (tag === "status_code" || tag === "alarm_word") return String(Math.round(value));
  const names = CODES[tag];
  if (names) return names[Math.round(value)] ?? String(Math.round(value));
  const unit = UNITS[tag];
  const digits = DIGITS[tag] ?? (Math.abs(value) >= 1000 ? 0 : 1);
  return unit ? `${value.toFixed(digits)} ${unit}` : value.toFixed(digits);
}
