// A small time-series line chart in SVG (no library): x is the result's
// first time column, y its first numeric column, one line per value of its
// first text column (at most MAX_SERIES).

const NS = 'http://www.w3.org/2000/svg';
const MAX_SERIES = 8;
const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#4b5563'];

function svg(tag, attrs, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

// Which columns a chart would use, or null when the result has no time
// column and numeric column.
export function chartColumns(columns) {
  const time = columns.findIndex((c) => c.kind === 'time');
  const value = columns.findIndex((c, i) => c.kind === 'number' && i !== time);
  if (time < 0 || value < 0) return null;
  const series = columns.findIndex((c) => c.kind === 'text');
  return { time, value, series };
}

export function lineChart(result, width = 900, height = 300) {
  const cols = chartColumns(result.columns);
  if (!cols) return null;
  const groups = new Map();
  for (const row of result.rows) {
    const t = Date.parse(row[cols.time]);
    const v = row[cols.value];
    if (Number.isNaN(t) || v === null || v === undefined) continue;
    const key = cols.series >= 0 ? String(row[cols.series]) : result.columns[cols.value].name;
    if (!groups.has(key)) {
      if (groups.size >= MAX_SERIES) continue;
      groups.set(key, []);
    }
    groups.get(key).push([t, Number(v)]);
  }
  const points = [...groups.values()].flat();
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, class: 'chart', role: 'img',
    'data-testid': 'chart', 'data-points': points.length });
  if (points.length === 0) {
    root.append(svg('text', { x: 10, y: 20 }, 'no points to draw'));
    return root;
  }
  const pad = { left: 60, right: 150, top: 10, bottom: 30 };
  let [x0, x1] = [Math.min(...points.map((p) => p[0])), Math.max(...points.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...points.map((p) => p[1])), Math.max(...points.map((p) => p[1]))];
  if (x0 === x1) { x0 -= 1000; x1 += 1000; }
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const sx = (x) => pad.left + ((x - x0) / (x1 - x0)) * (width - pad.left - pad.right);
  const sy = (y) => height - pad.bottom - ((y - y0) / (y1 - y0)) * (height - pad.top - pad.bottom);
  root.append(svg('rect', { x: pad.left, y: pad.top, width: width - pad.left - pad.right,
    height: height - pad.top - pad.bottom, class: 'plot' }));
  for (let i = 0; i <= 4; i += 1) {
    const y = y0 + ((y1 - y0) * i) / 4;
    root.append(svg('text', { x: pad.left - 6, y: sy(y) + 4, 'text-anchor': 'end', class: 'tick' },
      y.toPrecision(4)));
    const x = x0 + ((x1 - x0) * i) / 4;
    root.append(svg('text', { x: sx(x), y: height - 10, 'text-anchor': 'middle', class: 'tick' },
      new Date(x).toISOString().slice(11, 19)));
  }
  [...groups.entries()].forEach(([name, pts], i) => {
    pts.sort((a, b) => a[0] - b[0]);
    const d = pts.map((p, j) => `${j ? 'L' : 'M'}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join('');
    root.append(svg('path', { d, fill: 'none', stroke: COLORS[i % COLORS.length], 'stroke-width': 1.5 }));
    root.append(svg('text', { x: width - pad.right + 8, y: pad.top + 14 + i * 16,
      fill: COLORS[i % COLORS.length], class: 'legend' }, name.slice(0, 24)));
  });
  return root;
}
