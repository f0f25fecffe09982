// Bar charts for tabular tool results ({columns, rows}): one label column and one numeric column,
// drawn as SVG by hand (no library, no inline style; colours come from app.css).

const SVG = 'http://www.w3.org/2000/svg';
export const MAX_BARS = 40;

const asNumber = (v) => {
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'string' && /^\s*-?\d+(\.\d+)?\s*$/.test(v)) return Number(v);
  return null;
};

/**
 * What to draw for a result, or null: `{labelColumn, valueColumn, bars: [{label, value}]}`.
 * The value column is the last column whose every cell is a number; the label column the first
 * other column (text preferred).
 */
export function chartModel(result) {
  const columns = result?.columns;
  const rows = result?.rows;
  if (!Array.isArray(columns) || !Array.isArray(rows) || columns.length < 2) return null;
  if (rows.length < 1 || rows.length > MAX_BARS || !rows.every((r) => Array.isArray(r))) return null;
  const numeric = columns.map((_, j) => rows.every((r) => asNumber(r[j]) !== null));
  const valueIndex = numeric.lastIndexOf(true);
  if (valueIndex < 0) return null;
  let labelIndex = numeric.findIndex((isNumber, j) => !isNumber && j !== valueIndex);
  if (labelIndex < 0) labelIndex = columns.findIndex((_, j) => j !== valueIndex);
  return {
    labelColumn: String(columns[labelIndex]),
    valueColumn: String(columns[valueIndex]),
    bars: rows.map((r) => ({ label: String(r[labelIndex] ?? ''), value: asNumber(r[valueIndex]) })),
  };
}

/** Round tick step for a range (1, 2 or 5 times a power of ten). */
export function niceStep(range, ticks = 5) {
  if (!(range > 0)) return 1;
  const raw = range / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  const unit = [1, 2, 5, 10].find((m) => m * power >= raw) ?? 10;
  return unit * power;
}

const full = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });
const compact = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 });

function el(name, attributes = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The chart for a result as an <svg> drawn `width` units wide, or null when the result is not chartable. */
export function barChart(result, { width = 640 } = {}) {
  const model = chartModel(result);
  if (!model) return null;
  const { bars } = model;
  const height = width < 480 ? 240 : 300;
  const margin = { top: 28, right: 12, bottom: bars.length > 8 ? 64 : 48, left: 64 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const max = Math.max(0, ...bars.map((b) => b.value));
  const min = Math.min(0, ...bars.map((b) => b.value));
  const step = niceStep(max - min || 1);
  const top = Math.ceil(max / step) * step || step;
  const bottom = Math.floor(min / step) * step;
  const y = (v) => margin.top + plotH - ((v - bottom) / (top - bottom)) * plotH;

  const svg = el('svg', {
    class: 'chart',
    'data-testid': 'chart',
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-label': `Bar chart of ${model.valueColumn} by ${model.labelColumn}`,
  });
  svg.append(el('title', {}, `${model.valueColumn} by ${model.labelColumn}`));

  for (let v = bottom; v <= top + step / 2; v += step) {
    svg.append(el('line', { class: 'grid', x1: margin.left, x2: width - margin.right, y1: y(v), y2: y(v) }));
    svg.append(el('text', { class: 'tick-label', x: margin.left - 8, y: y(v) + 4, 'text-anchor': 'end' }, compact.format(v)));
  }
  svg.append(el('line', { class: 'axis', x1: margin.left, x2: width - margin.right, y1: y(0), y2: y(0) }));
  svg.append(el('line', { class: 'axis', x1: margin.left, x2: margin.left, y1: margin.top, y2: margin.top + plotH }));

  const band = plotW / bars.length;
  const barW = Math.max(2, Math.min(64, band * 0.62));
  const showValues = bars.length <= 12;
  const labelEvery = Math.ceil(bars.length / 16);
  bars.forEach((b, i) => {
    const x = margin.left + band * i + (band - barW) / 2;
    const y0 = y(Math.max(0, b.value));
    const h = Math.max(1, Math.abs(y(b.value) - y(0)));
    const bar = el('rect', { class: 'bar', x, y: y0, width: barW, height: h, rx: 3 });
    bar.append(el('title', {}, `${b.label}: ${full.format(b.value)}`));
    svg.append(bar);
    if (showValues) {
      svg.append(el('text', { class: 'value-label', x: x + barW / 2, y: y0 - 6, 'text-anchor': 'middle' }, compact.format(b.value)));
    }
    if (i % labelEvery === 0) {
      const cx = x + barW / 2;
      const ly = margin.top + plotH + 18;
      const label = b.label.length > 14 ? `${b.label.slice(0, 13)}…` : b.label;
      const attributes = bars.length > 8
        ? { class: 'tick-label', x: cx, y: ly, 'text-anchor': 'end', transform: `rotate(-35 ${cx} ${ly})` }
        : { class: 'tick-label', x: cx, y: ly, 'text-anchor': 'middle' };
      svg.append(el('text', attributes, label));
    }
  });
  svg.append(el('text', { class: 'axis-title', x: margin.left + plotW / 2, y: height - 6, 'text-anchor': 'middle' }, model.labelColumn));
  svg.append(el('text', { class: 'axis-title', x: 14, y: margin.top + plotH / 2, 'text-anchor': 'middle', transform: `rotate(-90 14 ${margin.top + plotH / 2})` }, model.valueColumn));
  return svg;
}
