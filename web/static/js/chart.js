// Charts: loads the vendored Chart.js (UMD build, global `Chart`) on first use and makes charts
// themed from the page's CSS variables, re-themed when the system switches light/dark.

const SRC = "/static/vendor/chart.umd.min.js";
let loaded = null;
const live = new Set();

/** The Chart constructor, loading the script once (a classic <script src>: the CSP allows 'self'). */
export function loadChart() {
  if (window.Chart) return Promise.resolve(window.Chart);
  if (!loaded) {
    loaded = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = SRC;
      script.addEventListener("load", () => resolve(window.Chart));
      script.addEventListener("error", () => {
        loaded = null; // let a retry try again
        script.remove();
        reject(new Error("The chart library could not be loaded."));
      });
      document.head.append(script);
    });
  }
  return loaded;
}

/** The theme colours, read from CSS variables so charts follow style.css in light and dark. */
export function theme() {
  const css = getComputedStyle(document.documentElement);
  const read = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  const series = [];
  for (let i = 1; i <= 8; i += 1) series.push(read(`--series-${i}`, read("--accent", "#2563eb")));
  return {
    text: read("--text", "#18202b"),
    muted: read("--muted", "#5b6675"),
    border: read("--border", "#d9dee5"),
    surface: read("--surface", "#ffffff"),
    series,
  };
}

function colour(hex, alpha) {
  // "#rrggbb" → rgba, for translucent fills; other notations are used as they are.
  const match = /^#([0-9a-f]{6})$/i.exec(hex);
  if (!match) return hex;
  const n = parseInt(match[1], 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

function styled(config, colours) {
  const stacked = Boolean(config.stacked);
  const datasets = config.datasets.map((set, i) => {
    const c = colours.series[i % colours.series.length];
    return {
      ...set,
      borderColor: c,
      backgroundColor: config.type === "bar" ? colour(c, 0.75) : colour(c, 0.15),
      pointRadius: config.labels.length > 60 ? 0 : 2,
      borderWidth: 2,
      cubicInterpolationMode: "monotone",
      fill: config.type === "line" && config.datasets.length === 1,
    };
  });
  const axis = (extra) => ({
    ticks: { color: colours.muted, maxRotation: 0, autoSkip: true, autoSkipPadding: 12 },
    grid: { color: colours.border },
    border: { color: colours.border },
    stacked,
    ...extra,
  });
  const format = config.format || ((v) => String(v));
  // An axis's labels may need the step between ticks (money: enough decimals to tell them apart).
  const tick = config.tickFormat ? (v, _, ticks) => config.tickFormat(v, ticks) : (v) => format(v);
  return {
    type: config.type || "line",
    data: { labels: config.labels, datasets },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      interaction: { mode: "index", intersect: false },
      scales: {
        x: axis({ grid: { display: false }, border: { color: colours.border } }),
        y: axis({ beginAtZero: true, ticks: { color: colours.muted, callback: tick, maxTicksLimit: 6, precision: config.integers ? 0 : undefined } }),
      },
      plugins: {
        legend: {
          display: config.datasets.length > 1,
          position: "bottom",
          labels: { color: colours.text, boxWidth: 12 },
        },
        tooltip: {
          callbacks: {
            label: (item) => `${item.dataset.label}: ${format(item.parsed.y)}`,
          },
        },
      },
    },
  };
}

/**
 * A chart on `canvas` (inside a sized .chart-box): config = {type: "line"|"bar", labels,
 * datasets: [{label, data}], format: value → text, tickFormat: (value, ticks) → axis label
 * (optional), integers: whole-number ticks only (counts: no "0, 0, 1, 1" from steps of 0.2),
 * stacked}. Call destroy() when done.
 */
export async function makeChart(canvas, config) {
  const Chart = await loadChart();
  const chart = new Chart(canvas, styled(config, theme()));
  const entry = { chart, config };
  live.add(entry);
  return {
    chart,
    destroy() {
      live.delete(entry);
      chart.destroy();
    },
  };
}

/** Re-theme every chart on screen (the CSS variables have changed with the colour scheme). */
function retheme() {
  const colours = theme();
  for (const { chart, config } of live) {
    const next = styled(config, colours);
    chart.data.datasets.forEach((set, i) => Object.assign(set, next.data.datasets[i]));
    chart.options.scales = next.options.scales;
    chart.options.plugins = next.options.plugins;
    chart.update();
  }
}

window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", retheme);
// The header's theme switch (js/theme.js) changed the variables without the system changing.
document.addEventListener("themechange", retheme);
