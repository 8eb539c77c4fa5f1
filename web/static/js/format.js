// Number and time formatting shared by every page.

const integer = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });

export function count(n) {
  if (n === null || n === undefined) return "—";
  return Math.abs(n) >= 100000 ? compact.format(n) : integer.format(n);
}

export function tokens(n) {
  return n === null || n === undefined ? "—" : count(n);
}

/**
 * Dollars for people: two decimals from a dollar up ($1.24, $1,234.50), two significant digits
 * below ($0.15, $0.0031, $0.000012), so a priced call never reads as "$0.0000". null: "unpriced".
 */
export function usd(value) {
  if (value === null || value === undefined) return "unpriced";
  // Below what twelve decimals show, still not "$0.00": a priced call is never free.
  if (value !== 0 && Math.abs(value) < 10 ** -EXACT_DIGITS) return `< ${dollars(EXACT_DIGITS).format(10 ** -EXACT_DIGITS)}`;
  return dollars(2, fractionDigits(value)).format(value);
}

/** The exact amount, for a title: every digit a float of dollars carries that matters. */
export function usdExact(value) {
  if (value === null || value === undefined) return "Unpriced: no price is known for the model called";
  return `${dollars(2, EXACT_DIGITS).format(value)} USD`;
}

/**
 * An amount as an element: the short form shown, the exact one on hover; "unpriced" (no price
 * known) styled apart from $0.00 (a free model), so neither passes for the other.
 */
export function money(value) {
  const el = document.createElement("span");
  const unpriced = value === null || value === undefined;
  el.className = unpriced ? "money unpriced" : "money";
  el.textContent = usd(value);
  el.title = usdExact(value);
  return el;
}

/**
 * A logged call's cost: as `money`, but "—" for a call that reported no tokens (refused before
 * the upstream, or failed without usage): nothing was billed, so nothing is unpriced. The same
 * rule the budgets count unpriced calls by.
 */
export function callCost(call) {
  const known = call.cost_usd !== null && call.cost_usd !== undefined;
  if (known || call.prompt_tokens || call.completion_tokens) return money(call.cost_usd);
  const el = document.createElement("span");
  el.className = "money none";
  el.textContent = "—";
  el.title = "No tokens reported: nothing to price";
  return el;
}

/**
 * Tick labels for a money axis (a Chart.js ticks callback's value and ticks): as many decimals
 * as the step between ticks needs, the same for every tick, so no two labels read alike.
 */
export function usdTick(value, ticks) {
  let step = Infinity;
  for (let i = 1; i < (ticks || []).length; i += 1) {
    const gap = Math.abs(ticks[i].value - ticks[i - 1].value);
    if (gap > 0) step = Math.min(step, gap);
  }
  if (!Number.isFinite(step)) return usd(value);
  // Decimals that tell the step apart, ignoring float noise (0.00005000000000000001 → 5);
  // whole dollars when the step is (axes of $100s read "$500", not "$500.00").
  let digits = Math.abs(step - Math.round(step)) < 1e-9 ? 0 : 2;
  const exact = (d) => Math.abs(Math.round(step * 10 ** d) - step * 10 ** d) <= 1e-6 * step * 10 ** d;
  while (digits < EXACT_DIGITS && !exact(digits)) digits += 1;
  return dollars(digits, digits).format(value);
}

// Twelve decimals: a millionth of a cent and below, past anything a price table holds.
const EXACT_DIGITS = 12;
const dollarFormats = new Map();

function dollars(minimum, maximum = minimum) {
  const key = `${minimum}:${maximum}`;
  if (!dollarFormats.has(key)) {
    dollarFormats.set(
      key,
      new Intl.NumberFormat(undefined, {
        style: "currency",
        currency: "USD",
        minimumFractionDigits: minimum,
        maximumFractionDigits: maximum,
      }),
    );
  }
  return dollarFormats.get(key);
}

/** Decimals that show two significant digits of an amount under a dollar, else two. */
function fractionDigits(value) {
  const size = Math.abs(value);
  if (size === 0 || size >= 1) return 2;
  return Math.min(EXACT_DIGITS, Math.max(2, Math.ceil(-Math.log10(size)) + 1));
}

export function ms(value) {
  if (value === null || value === undefined) return "—";
  if (value >= 10000) return `${(value / 1000).toFixed(1)} s`;
  if (value >= 1000) return `${(value / 1000).toFixed(2)} s`;
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ms`;
}

export function percent(fraction) {
  if (fraction === null || fraction === undefined) return "—";
  return `${(fraction * 100).toFixed(fraction < 0.1 ? 1 : 0)}%`;
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

export function ago(msSinceEpoch) {
  if (!msSinceEpoch) return "never";
  const seconds = Math.round((msSinceEpoch - Date.now()) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 60) return relative.format(seconds, "second");
  if (abs < 3600) return relative.format(Math.round(seconds / 60), "minute");
  if (abs < 86400) return relative.format(Math.round(seconds / 3600), "hour");
  return relative.format(Math.round(seconds / 86400), "day");
}

export function dateTime(msSinceEpoch) {
  if (!msSinceEpoch) return "—";
  return new Date(msSinceEpoch).toLocaleString();
}

export function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}
