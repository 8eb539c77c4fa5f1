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

export function usd(value) {
  if (value === null || value === undefined) return "unpriced";
  const digits = Math.abs(value) < 0.01 && value !== 0 ? 4 : 2;
  return new Intl.NumberFormat(undefined, {
    style: "currency",
    currency: "USD",
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  }).format(value);
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
